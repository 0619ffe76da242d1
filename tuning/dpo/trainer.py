"""The DPO stage on TRL's DPOTrainer: pairs -> TRL's conversational preference rows -> a LoRA
adapter (reference: adapter disabled) or a full model (reference: a frozen copy), registered
with lineage; plus the implicit-reward accuracy the bench and the metrics report."""

from __future__ import annotations

import time
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import ModelCard, Registry
from agentkit.registry.card import Lineage
from agentkit.tuning.dpo.config import DpoMethodConfig
from agentkit.tuning.preference import PreferencePair, data_sha256, load_preference_split
from agentkit.tuning.reporting import progress_callback
from agentkit.tuning.stage import StartPoint, check_output_free, register_result


def trl_rows(pairs: list[PreferencePair]) -> Any:
    """TRL's conversational preference layout: prompt messages, one-message chosen / rejected."""
    from datasets import Dataset

    return Dataset.from_list([{
        "prompt": p.prompt,
        "chosen": [{"role": "assistant", "content": p.chosen}],
        "rejected": [{"role": "assistant", "content": p.rejected}],
    } for p in pairs])  # fmt: skip


def completion_logps(model: Any, tokenizer: Any, pairs: list[PreferencePair], max_length: int,
                     batch_size: int = 8) -> list[tuple[float, float]]:  # fmt: skip
    """Per pair, (log P(chosen | prompt), log P(rejected | prompt)) summed over the answer's tokens
    (its text and end-of-turn), rendered as DPO trains on them; a prompt longer than the window
    loses its front."""
    import torch

    from agentkit.models.reward import pad_right

    rows, starts = [], []
    for p in pairs:
        prompt = len(tokenizer.apply_chat_template(p.prompt, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"])  # fmt: skip
        for answer in (p.chosen, p.rejected):
            ids = list(tokenizer.apply_chat_template(p.prompt + [{"role": "assistant", "content": answer}],
                                                     tokenize=True, return_dict=True)["input_ids"])  # fmt: skip
            cut = max(0, len(ids) - max_length)
            rows.append(ids[cut:])
            starts.append(max(prompt - cut, 1))  # first answer token; position 0 has no prediction
    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            ids, mask = pad_right(chunk, tokenizer.pad_token_id)
            logps = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)  # (B, T, V)
            token = logps[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1): log P(x_t | x_<t)
            for j, row in enumerate(chunk):
                out.append(float(token[j, starts[i + j] - 1 : len(row) - 1].sum()))
    return list(zip(out[0::2], out[1::2]))


def implicit_accuracy(policy: list[tuple[float, float]], reference: list[tuple[float, float]]) -> float:
    """Share of pairs whose implicit reward beta * (log pi - log pi_ref) ranks chosen above rejected."""
    wins = sum((pc - rc) > (pr - rr) for (pc, pr), (rc, rr) in zip(policy, reference))
    return wins / max(len(policy), 1)


class DpoRun:
    """One DPO run: `prepare` (load, wire TRL), `fit`, `register`."""

    def __init__(self, config: Any, registry: Registry, start: StartPoint, trainer: Any, tokenizer: Any,
                 train: list[PreferencePair], held: list[PreferencePair], continued: bool) -> None:  # fmt: skip
        self.config, self.registry, self.start, self.trainer = config, registry, start, trainer
        self.tokenizer, self.train_pairs, self.eval_pairs, self.continued = tokenizer, train, held, continued
        self.metrics: dict[str, Any] = {}

    @property
    def model(self) -> Any:
        return self.trainer.model

    @classmethod
    def prepare(cls, config: Any, registry: Registry | None = None, *, progress: bool = False) -> DpoRun:
        import torch
        from transformers import AutoModelForCausalLM, PrinterCallback, set_seed
        from trl import DPOConfig, DPOTrainer

        from agentkit.registry.loading import load_tokenizer, load_weights

        registry = registry or Registry.default()
        check_output_free(registry, config.output)
        method: DpoMethodConfig = config.method_config
        start = StartPoint.resolve(registry, config.base, fold=method.peft == "full")  # lora continues an adapter start
        train, held = load_preference_split(config.data)
        set_seed(config.train.seed)
        continued = method.peft == "lora" and start.adapter is not None
        ref_model, peft_config = None, None
        if continued:
            # DPO continues the SFT adapter; TRL copies it into a frozen "ref" adapter, so the
            # reference is the SFT model and the result is one adapter on the base.
            from peft import PeftModel

            model = load_weights(registry.path(start.base.id), AutoModelForCausalLM)
            model = PeftModel.from_pretrained(model, str(registry.path(start.entry.id)), is_trainable=True)
            tokenizer = load_tokenizer(registry.path(start.entry.id))
        else:
            model, tokenizer = start.load(registry)
            if method.peft == "lora":
                peft_config = method.lora.to_peft("causal_lm")  # reference: this model with the adapter disabled
            else:
                ref_model, _ = start.load(registry)
                ref_model.eval().requires_grad_(False)
        train_cfg = config.train
        args = DPOConfig(
            output_dir=str(registry.root / "runs" / config.output),
            beta=method.beta, loss_type=[method.loss_type], max_length=train_cfg.max_length,
            learning_rate=train_cfg.learning_rate, num_train_epochs=train_cfg.epochs, max_steps=train_cfg.max_steps or -1,
            per_device_train_batch_size=train_cfg.batch_size, per_device_eval_batch_size=train_cfg.batch_size,
            gradient_accumulation_steps=train_cfg.gradient_accumulation, warmup_steps=train_cfg.warmup_steps,
            weight_decay=train_cfg.weight_decay, logging_steps=train_cfg.logging_steps, seed=train_cfg.seed,
            eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True,
            # CPU-friendly: TRL turns on bf16 and activation checkpointing by default (GPU habits).
            bf16=False, activation_checkpointing=False, use_cpu=not torch.accelerator.is_available(),
            dataloader_pin_memory=False,
        )  # fmt: skip
        trainer = DPOTrainer(
            model=model, ref_model=ref_model, args=args, train_dataset=trl_rows(train),
            eval_dataset=trl_rows(held) if held else None, processing_class=tokenizer, peft_config=peft_config,
            callbacks=[progress_callback()] if progress else [],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        return cls(config, registry, start, trainer, tokenizer, train, held, continued)

    def fit(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.trainer.train()
        logs = self.trainer.state.log_history
        losses = [e["loss"] for e in logs if "loss" in e]
        self.metrics = {
            "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
            "train_seconds": round(time.perf_counter() - started, 2), "steps": self.trainer.state.global_step,
            "train_rewards_accuracy_last": next((e["rewards/accuracies"] for e in reversed(logs)
                                                 if "rewards/accuracies" in e), None),
        }  # fmt: skip
        if self.eval_pairs:  # implicit-reward accuracy and margin on held-out pairs (TRL's eval)
            results = self.trainer.evaluate()
            self.metrics.update({k: v for k, v in results.items() if isinstance(v, (int, float))})
        return self.metrics

    def register(self) -> ModelCard:
        """Publish the policy: the trained adapter only (not TRL's frozen "ref" copy), or a base entry."""
        config = self.config
        adapter = hasattr(self.model, "peft_config")
        reference = ("the start adapter, frozen" if self.continued
                     else "the start model (adapter disabled)" if adapter else "a frozen copy of the start model")  # fmt: skip
        lineage = Lineage(
            config=config.to_yaml_dict(), base_weights_sha256=self.start.base.weights,
            # A continued SFT adapter is not folded in: this one replaces it.
            start=self.start.lineage(folded=not self.continued),
            data_sha256=data_sha256(config.data.train, config.data.eval),
            train_pairs=len(self.train_pairs), eval_pairs=len(self.eval_pairs), reference=reference,
        )  # fmt: skip
        save = (lambda stage: self.model.save_pretrained(stage, selected_adapters=["default"])) if adapter \
            else self.model.save_pretrained  # fmt: skip
        return register_result(
            self.registry, config.output, save=save, tokenizer=self.tokenizer, task="causal_lm", method="dpo",
            base=self.start.base.id if adapter else None, metrics=self.metrics, lineage=lineage,
            source_ref=str(self.registry.root / "runs" / config.output),
            log=("trainer_log.json", self.trainer.state.log_history),
        )  # fmt: skip


def run_dpo(config: Any, registry: Registry, *, resume: bool = False, progress: bool = False) -> ModelCard:
    """`agentkit tune` for method: dpo."""
    if resume:
        raise BadInputError(
            "method dpo does not resume from checkpoints.", fix="run it again without --resume."
        )
    run = DpoRun.prepare(config, registry, progress=progress)
    run.fit()
    return run.register()

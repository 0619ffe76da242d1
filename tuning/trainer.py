"""`train(config)`: the method's `run`. Its default, the shared HF Trainer path (`Run`): base model
from the registry -> the method's trainable model -> HF Trainer -> a registered adapter (or base
entry) with its lineage (base weights, config, data hash, metrics, chat template)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import EntryKind, ModelCard, ModelTask, Registry
from agentkit.registry.card import Lineage
from agentkit.tuning.config import TuneConfig
from agentkit.tuning.data import ChatExample, load_dataset
from agentkit.tuning.lora.init_adapter import resolve_init_adapter
from agentkit.tuning.methods import get_method
from agentkit.tuning.packing import can_pack, packed_collator
from agentkit.tuning.reporting import classification_metrics, progress_callback, write_artifacts
from agentkit.tuning.stage import check_output_free, register_result
from agentkit.tuning.tokenize import IGNORE, PadCollator, encode_chat, encode_label

_BASE_TASKS = {
    "causal_lm": {ModelTask.CAUSAL_LM},
    "sequence_classification": {ModelTask.EMBEDDING, ModelTask.SEQUENCE_CLASSIFICATION},
}


def _load_base(registry: Registry, config: TuneConfig, num_labels: int | None, label_names: list[str] | None) -> tuple[Any, Any, ModelCard]:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from agentkit.registry.loading import load_tokenizer, load_weights

    card = registry.verify(config.base)
    if card.kind is not EntryKind.BASE or card.task not in _BASE_TASKS[config.task]:
        raise BadInputError(
            f"base {config.base!r} is a {card.kind.value} {card.task.value} entry, which cannot be "
            f"tuned for task {config.task!r}.",
            fix="use a causal_lm base (smollm2-135m-instruct) for causal_lm, an encoder (minilm-l6) for classification.",
        )
    path = registry.path(config.base)
    tokenizer = load_tokenizer(path)
    if config.task == "causal_lm":
        model = load_weights(path, AutoModelForCausalLM)
    else:
        names = label_names or [str(i) for i in range(num_labels or 2)]
        model = load_weights(path, AutoModelForSequenceClassification, num_labels=len(names),
                             id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})  # fmt: skip
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, card


def _encode(tokenizer: Any, examples: list[Any], max_length: int) -> list[dict[str, Any]]:
    """Tokenised rows; chat rows whose every answer token was cut by max_length are dropped
    (they would train on nothing, and an all-masked batch gives a NaN loss)."""
    encode = encode_chat if examples and isinstance(examples[0], ChatExample) else encode_label
    rows = [encode(tokenizer, ex, max_length) for ex in examples]
    return [r for r in rows if not isinstance(r["labels"], list) or any(x != IGNORE for x in r["labels"])]


def _training_args(config: TuneConfig, run_dir: Path, has_eval: bool) -> Any:
    """HF TrainingArguments from the `train:` block. Evals and checkpoints share one schedule
    (every epoch, or every `eval_steps`), which early stopping and best-checkpoint loading need."""
    import torch
    from transformers import TrainingArguments

    train = config.train
    schedule = "steps" if train.eval_steps else "epoch"
    best = train.metric_for_best or ("accuracy" if config.task == "sequence_classification" else "loss")
    return TrainingArguments(
        output_dir=str(run_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        learning_rate=train.learning_rate,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.gradient_accumulation,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        label_smoothing_factor=train.label_smoothing,
        include_num_input_tokens_seen="non_padding",  # the card's trained_tokens (a job's, in the API)
        logging_steps=train.logging_steps,
        eval_strategy=schedule if has_eval else "no",
        save_strategy=schedule,
        eval_steps=train.eval_steps,
        save_steps=train.eval_steps or 500,
        save_total_limit=train.save_total_limit,
        # Early stopping keeps the best checkpoint, so it has to be able to return to it.
        load_best_model_at_end=bool(train.early_stopping_patience and has_eval),
        metric_for_best_model=best if has_eval else None,
        seed=train.seed,
        deepspeed=train.deepspeed,
        # Without a GPU, say so: then `accelerate launch --multi_gpu --num_processes N` (torchrun)
        # gives N CPU processes joined over gloo (accelerate's MULTI_CPU) instead of N lone runs.
        use_cpu=not torch.accelerator.is_available(),
        # Token averaging across processes rescales the loss by the process count, expecting the
        # model to divide by the global token count; a classifier's loss is a per-batch mean (PEFT
        # passes the kwarg through and BERT ignores it), so DDP logged and stepped 2x the loss.
        average_tokens_across_devices=config.task == "causal_lm",
        report_to=[],
        remove_unused_columns=False,
        disable_tqdm=True,  # our rich bar instead (progress_callback)
        dataloader_pin_memory=False,
    )


def _check_deepspeed(path: str) -> None:
    import importlib.util

    if not Path(path).is_file():
        raise BadInputError(f"train.deepspeed: {path}: no such file.", fix="point it at a DeepSpeed JSON config.")
    if importlib.util.find_spec("deepspeed") is None:
        raise BadInputError(
            "train.deepspeed is set, but the deepspeed package is not installed.",
            fix="pip install deepspeed (on the training machines), or remove train.deepspeed.",
        )


class Run:
    """One tuning run, in three steps: `prepare` (load, apply the method, tokenise), `fit`, and
    `register` (publish the result with its lineage). `train()` does all three."""

    def __init__(self, config: TuneConfig, registry: Registry, model: Any, tokenizer: Any, base_card: ModelCard,
                 dataset: Any, trainer: Any, init_card: ModelCard | None = None) -> None:  # fmt: skip
        self.config, self.registry, self.model, self.tokenizer = config, registry, model, tokenizer
        self.base_card, self.dataset, self.trainer = base_card, dataset, trainer
        self.init_card = init_card  # the adapter a continued LoRA started from (lora.init_adapter)
        self.metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    @property
    def run_dir(self) -> Path:
        return self.registry.root / "runs" / self.config.output

    @classmethod
    def prepare(cls, config: TuneConfig, registry: Registry | None = None, *, progress: bool = False) -> Run:
        from transformers import EarlyStoppingCallback, PrinterCallback, Trainer

        registry = registry or Registry.default()
        if not get_method(config.method).uses_trainer:
            raise BadInputError(f"method {config.method!r} trains with a loop of its own, not the shared Trainer path.",
                                fix="run it with `agentkit tune CONFIG` (or get_method(name).run), not Run.prepare.")  # fmt: skip
        check_output_free(registry, config.output)
        if config.train.deepspeed:  # before the model loads: a missing engine should cost nothing
            _check_deepspeed(config.train.deepspeed)
        # lora.init_adapter: checked in the registry before any weights load; the config that comes
        # back carries that adapter's settings and folder.
        config, init_card = resolve_init_adapter(config, registry)
        dataset = load_dataset(config.data)
        is_chat = bool(dataset.train) and isinstance(dataset.train[0], ChatExample)
        if is_chat != (config.task == "causal_lm"):
            raise BadInputError(
                f"data format {config.data.format!r} does not fit task {config.task!r}.",
                fix="use text_label data for sequence_classification, alpaca/sharegpt/openai for causal_lm.",
            )
        labels = dataset.label_names
        from transformers import set_seed

        set_seed(config.train.seed)  # before LoRA / head initialisation, so runs repeat
        model, tokenizer, base_card = _load_base(registry, config, len(labels or []) or None, labels)
        model = config.method_config.make_trainable(model, config.task)
        train_rows = _encode(tokenizer, dataset.train, config.train.max_length)
        eval_rows = _encode(tokenizer, dataset.eval, config.train.max_length)
        if not train_rows:
            raise BadInputError(
                f"every training row lost its answer to truncation at train.max_length={config.train.max_length}.",
                fix="raise train.max_length above the prompt length, or shorten the prompts.",
            )
        args = _training_args(config, registry.root / "runs" / config.output, has_eval=bool(eval_rows))
        trainer = Trainer(
            model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows or None,
            data_collator=packed_collator(model) if can_pack(config) else PadCollator(tokenizer.pad_token_id),
            compute_metrics=classification_metrics if config.task == "sequence_classification" else None,
            callbacks=[progress_callback()] if progress else [],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # prints raw log dicts; the rich bar shows them instead
        if config.train.early_stopping_patience and eval_rows:
            trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=config.train.early_stopping_patience))
        return cls(config, registry, model, tokenizer, base_card, dataset, trainer, init_card)

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train; `resume` continues from the newest complete checkpoint of this output's run
        folder (a run killed mid-save leaves an incomplete one, which is skipped)."""
        import shutil

        started = time.perf_counter()
        checkpoint = last_checkpoint(self.run_dir) if resume else None
        if not resume and self.run_dir.exists() and self.trainer.is_world_process_zero():
            shutil.rmtree(self.run_dir)  # a fresh run: stale checkpoints must not mix into rotation
        self.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        losses = [entry["loss"] for entry in self.trainer.state.log_history if "loss" in entry]
        self.metrics = {
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "train_seconds": round(time.perf_counter() - started, 2),
            "steps": self.trainer.state.global_step,
            "trained_tokens": int(self.trainer.state.num_input_tokens_seen),
            "resumed_from_step": int(checkpoint.name.split("-")[-1]) if checkpoint else None,
        }
        self.history = list(self.trainer.state.log_history)  # the curves: what happened while training
        if self.trainer.eval_dataset:  # final eval, of the best checkpoint when early stopping kept one
            self.metrics.update({k: v for k, v in self.trainer.evaluate().items() if isinstance(v, (int, float))})
        return self.metrics

    def register(self) -> ModelCard:
        """Publish the result: the PEFT adapter (or, with every weight trained, a base entry)."""
        config, trainer = self.config, self.trainer
        adapter = hasattr(self.model, "peft_config")
        lineage = Lineage(
            config=config.to_yaml_dict(),
            base_weights_sha256=self.base_card.weights,
            init_adapter=self.init_card.id if self.init_card else None,
            init_adapter_weights_sha256=self.init_card.weights if self.init_card else None,
            data_sha256=self.dataset.source_sha256,
            data_rows=self.dataset.rows,
            train_rows=len(trainer.train_dataset),
            eval_rows=len(trainer.eval_dataset or []),
            label_names=self.dataset.label_names,
            dropped_by_max_length=len(self.dataset.train) + len(self.dataset.eval)
            - len(trainer.train_dataset) - len(trainer.eval_dataset or []),
            processes=trainer.args.world_size,  # > 1 under `accelerate launch`
        )
        return register_result(
            self.registry, config.output, save=self.model.save_pretrained, tokenizer=self.tokenizer,
            task=config.task, method=config.method, base=config.base if adapter else None,
            metrics=self.metrics, lineage=lineage, source_ref=str(self.run_dir),
            log=("trainer_log.json", trainer.state.log_history),
            # The curves and evals of the training itself, without the final evaluate() fit() added.
            artifacts=lambda stage: write_artifacts(stage, self.metrics, self.history),
        )  # fmt: skip


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest `checkpoint-N` folder whose trainer_state.json was written (saved last)."""
    done = [d for d in run_dir.glob("checkpoint-*") if (d / "trainer_state.json").is_file()]
    return max(done, key=lambda d: int(d.name.split("-")[-1]), default=None)


def train(
    config: TuneConfig, *, registry: Registry | None = None, resume: bool = False, progress: bool = False
) -> ModelCard:
    """Train `config` with its method's `run` and register the result as `config.output`; returns its card."""
    return get_method(config.method).run(config, registry or Registry.default(), resume=resume, progress=progress)


def train_with_trainer(config: TuneConfig, registry: Registry, *, resume: bool = False, progress: bool = False) -> ModelCard:
    """The shared HF Trainer path (every method's default `run`): prepare, fit, register.

    Under `accelerate launch` every process trains its shard of each batch (DDP); the main
    process registers and the others wait for it, then read the same card."""
    run = Run.prepare(config, registry, progress=progress)
    run.fit(resume=resume)
    if run.trainer.is_world_process_zero():
        card = run.register()
    run.trainer.accelerator.wait_for_everyone()
    return card if run.trainer.is_world_process_zero() else run.registry.card(config.output)

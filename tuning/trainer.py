"""`train(config)`: base model from the registry -> method -> HF Trainer -> a registered adapter
with its lineage (base weights, config, data hash, metrics, chat template)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import EntryKind, ModelCard, ModelTask, Registry, SourceInfo
from agentkit.tuning.config import TuneConfig
from agentkit.tuning.data import ChatExample, load_dataset
from agentkit.tuning.methods import get_method
from agentkit.tuning.tokenize import IGNORE, PadCollator, encode_chat, encode_label

_BASE_TASKS = {
    "causal_lm": {ModelTask.CAUSAL_LM},
    "sequence_classification": {ModelTask.EMBEDDING, ModelTask.SEQUENCE_CLASSIFICATION},
}


def _load_base(registry: Registry, config: TuneConfig, num_labels: int | None, label_names: list[str] | None) -> tuple[Any, Any, ModelCard]:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    card = registry.verify(config.base)
    if card.kind is not EntryKind.BASE or card.task not in _BASE_TASKS[config.task]:
        raise BadInputError(
            f"base {config.base!r} is a {card.kind.value} {card.task.value} entry, which cannot be "
            f"tuned for task {config.task!r}.",
            fix="use a causal_lm base (smollm2-135m-instruct) for causal_lm, an encoder (minilm-l6) for classification.",
        )
    path = registry.path(config.base)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    common = {"use_safetensors": True, "local_files_only": True, "dtype": torch.float32}
    if config.task == "causal_lm":
        model = AutoModelForCausalLM.from_pretrained(path, **common)
    else:
        names = label_names or [str(i) for i in range(num_labels or 2)]
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}, **common,
        )  # fmt: skip
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, card


def _encode(tokenizer: Any, examples: list[Any], max_length: int) -> list[dict[str, Any]]:
    """Tokenised rows; chat rows whose every answer token was cut by max_length are dropped
    (they would train on nothing, and an all-masked batch gives a NaN loss)."""
    encode = encode_chat if examples and isinstance(examples[0], ChatExample) else encode_label
    rows = [encode(tokenizer, ex, max_length) for ex in examples]
    return [r for r in rows if not isinstance(r["labels"], list) or any(x != IGNORE for x in r["labels"])]


class Run:
    """One tuning run, in three steps: `prepare` (load, apply the method, tokenise), `fit`, and
    `register` (publish the result with its lineage). `train()` does all three."""

    def __init__(self, config: TuneConfig, registry: Registry, model: Any, tokenizer: Any, base_card: ModelCard,
                 dataset: Any, trainer: Any) -> None:  # fmt: skip
        self.config, self.registry, self.model, self.tokenizer = config, registry, model, tokenizer
        self.base_card, self.dataset, self.trainer = base_card, dataset, trainer
        self.metrics: dict[str, Any] = {}

    @property
    def run_dir(self) -> Path:
        return self.registry.root / "runs" / self.config.output

    @classmethod
    def prepare(cls, config: TuneConfig, registry: Registry | None = None) -> Run:
        from transformers import Trainer, TrainingArguments

        registry = registry or Registry.default()
        if config.output in registry:
            raise BadInputError(
                f"output {config.output!r} already exists in the registry.",
                fix=f"choose another `output:` or `agentkit models rm {config.output}`.",
            )
        method = get_method(config.method)
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
        model = method.apply(model, config.method_config, config.task)
        train_rows = _encode(tokenizer, dataset.train, config.train.max_length)
        eval_rows = _encode(tokenizer, dataset.eval, config.train.max_length)
        if not train_rows:
            raise BadInputError(
                f"every training row lost its answer to truncation at train.max_length={config.train.max_length}.",
                fix="raise train.max_length above the prompt length, or shorten the prompts.",
            )
        args = TrainingArguments(
            output_dir=str(registry.root / "runs" / config.output),
            num_train_epochs=config.train.epochs,
            max_steps=config.train.max_steps or -1,
            learning_rate=config.train.learning_rate,
            per_device_train_batch_size=config.train.batch_size,
            per_device_eval_batch_size=config.train.batch_size,
            gradient_accumulation_steps=config.train.gradient_accumulation,
            warmup_steps=config.train.warmup_steps,
            weight_decay=config.train.weight_decay,
            logging_steps=config.train.logging_steps,
            eval_strategy="epoch" if eval_rows else "no",
            save_strategy="epoch",
            save_total_limit=2,
            seed=config.train.seed,
            report_to=[],
            remove_unused_columns=False,
            disable_tqdm=True,
            dataloader_pin_memory=False,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows or None,
            data_collator=PadCollator(tokenizer.pad_token_id),
        )  # fmt: skip
        return cls(config, registry, model, tokenizer, base_card, dataset, trainer)

    def fit(self, resume: bool = False) -> dict[str, Any]:
        started = time.perf_counter()
        checkpoint = resume and any(self.run_dir.glob("checkpoint-*"))
        self.trainer.train(resume_from_checkpoint=True if checkpoint else None)
        losses = [entry["loss"] for entry in self.trainer.state.log_history if "loss" in entry]
        self.metrics = {
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "train_seconds": round(time.perf_counter() - started, 2),
            "steps": self.trainer.state.global_step,
        }
        if self.trainer.eval_dataset:
            self.metrics.update({k: v for k, v in self.trainer.evaluate().items() if isinstance(v, (int, float))})
        return self.metrics

    def register(self) -> ModelCard:
        config, method = self.config, get_method(self.config.method)

        def write(stage: Path) -> dict[str, Any]:
            self.model.save_pretrained(stage)  # PEFT: adapter_config.json + adapter_model.safetensors
            self.tokenizer.save_pretrained(stage)  # the tokenizer and chat template used in training
            (stage / "trainer_log.json").write_text(json.dumps(self.trainer.state.log_history, indent=1))
            return {
                "kind": "adapter" if method.produces_adapter else "base",
                "task": config.task,
                "base": config.base if method.produces_adapter else None,
                "method": config.method,
                "source": SourceInfo(type="tuning", ref=str(self.run_dir)),
                "chat_template": self.tokenizer.chat_template,
                "metrics": self.metrics,
                "lineage": {
                    "config": config.to_yaml_dict(),
                    "base_weights_sha256": self.base_card.weights,
                    "data_sha256": self.dataset.source_sha256,
                    "data_rows": self.dataset.rows,
                    "dropped_by_max_length": len(self.dataset.train) + len(self.dataset.eval)
                    - len(self.trainer.train_dataset) - len(self.trainer.eval_dataset or []),
                    "train_rows": len(self.trainer.train_dataset),
                    "eval_rows": len(self.trainer.eval_dataset or []),
                    "label_names": self.dataset.label_names,
                },
            }

        return self.registry.create_entry(config.output, write)


def train(config: TuneConfig, *, registry: Registry | None = None, resume: bool = False) -> ModelCard:
    """Train `config` and register the result as `config.output`; returns its card."""
    run = Run.prepare(config, registry)
    run.fit(resume=resume)
    return run.register()

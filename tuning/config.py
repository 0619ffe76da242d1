"""`tune.yaml` as a pydantic model: the same top-level keys for every method, the method's own
block named after it (`lora: {...}`), unknown keys rejected by name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentkit.errors import BadInputError
from agentkit.tuning.data import DataConfig
from agentkit.tuning.preference import PreferenceDataConfig


SAVE_TOTAL_LIMIT_ENV = "AGENTKIT_SAVE_TOTAL_LIMIT"


def default_save_total_limit() -> int:
    """Checkpoints a run keeps when its config sets none: $AGENTKIT_SAVE_TOTAL_LIMIT, else 2 (the newest,
    and the one before it in case a kill cut the newest short). A full fine-tune's checkpoint holds the
    weights and the optimizer state (~1.6 GB for the 135M built-in): short on disk, set it to 1."""
    text = os.environ.get(SAVE_TOTAL_LIMIT_ENV, "").strip()
    if not text:
        return 2
    if not text.isdigit() or int(text) < 1:
        raise BadInputError(f"${SAVE_TOTAL_LIMIT_ENV} is {text!r}, not a whole number of checkpoints.",
                            fix="set it to 1 or more, or unset it (default 2).")  # fmt: skip
    return int(text)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(default=1, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    batch_size: int = Field(default=8, gt=0, description="per device")
    gradient_accumulation: int = Field(default=1, gt=0)
    max_length: int = Field(default=512, gt=8, description="tokens per example; longer ones are cut")
    seed: int = 0
    max_steps: int | None = Field(default=None, gt=0, description="stop after this many steps")
    warmup_steps: float = Field(default=0, ge=0, description="steps, or a fraction of all steps when < 1")
    weight_decay: float = Field(default=0.0, ge=0)
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=1,
        description="share of each target's probability spread over the other classes or tokens "
        "(transformers' label_smoothing_factor); 0.1 is the usual value",
    )  # fmt: skip
    logging_steps: int = Field(default=1, gt=0)
    packing: bool = Field(
        default=True,
        description="causal_lm with lora/full: train on each batch's examples laid end to end in one row "
        "(padding-free: no pad tokens computed, no attention or loss across examples; same loss as padding). "
        "Prompt-learning methods and sequence_classification always pad",
    )
    eval_steps: int | None = Field(
        default=None, gt=0, description="evaluate and save a checkpoint every N steps; None: every epoch"
    )
    early_stopping_patience: int | None = Field(
        default=None, gt=0, description="stop after N evals without improvement; the best checkpoint is kept"
    )
    metric_for_best: str | None = Field(
        default=None,
        description="eval metric that picks the best checkpoint (loss, accuracy, f1); "
        "default: accuracy for sequence_classification, loss for causal_lm",
    )
    save_total_limit: int = Field(
        default_factory=default_save_total_limit, gt=0,
        description=f"checkpoints kept in the run folder; default ${SAVE_TOTAL_LIMIT_ENV}, else 2",
    )  # fmt: skip
    deepspeed: str | None = Field(
        default=None, description="a DeepSpeed JSON config (ZeRO stage...) for `accelerate launch`; needs deepspeed"
    )


class TuneConfig(BaseModel):
    """A tuning run: base model, task, method and its block, data, training settings, output id."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="registry id of the base model (`agentkit models import` a folder first)")
    task: Literal["causal_lm", "sequence_classification"] = "causal_lm"
    method: str = Field(description="lora | ... (see `agentkit.tuning.methods.method_names()`)")
    method_config: Any = Field(default=None, exclude=True, description="the validated method block")
    # A method config class with a `data_config` class attribute (the preference stages:
    # reward, dpo, ppo, ...) reads its own data block; every other method reads DataConfig.
    data: DataConfig | PreferenceDataConfig = Field(union_mode="left_to_right")
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: str = Field(description="registry id of the result")

    @model_validator(mode="before")
    @classmethod
    def _method_block(cls, values: Any) -> Any:
        """Pop the block named after `method` and validate it with that method's config class."""
        from agentkit.tuning.methods import get_method, method_names

        if not isinstance(values, dict) or "method" not in values:
            return values
        values = dict(values)
        method = get_method(str(values["method"]))
        block = values.pop(method.name, None) or {}
        try:
            method.check_task(str(values.get("task", "causal_lm")))
        except BadInputError as exc:
            raise ValueError(exc.one_line()) from None
        if method.train_defaults:  # the method's own defaults for what `train:` leaves out
            train = values.get("train")
            if isinstance(train, TrainConfig):
                unset = {k: v for k, v in method.train_defaults.items() if k not in train.model_fields_set}
                values["train"] = TrainConfig.model_validate({**unset, **train.model_dump(include=train.model_fields_set)})
            elif train is None or isinstance(train, dict):
                values["train"] = {**method.train_defaults, **(train or {})}
        stray = [k for k in values if k in method_names()]
        if stray:
            raise ValueError(f"block {stray[0]!r} given, but method is {method.name!r}; rename or remove it")
        try:
            values["method_config"] = method.config_class.model_validate(block)
        except ValidationError as exc:  # name the block, so `lora.rank` reads as it is written
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (method.name, *first.get("loc", ())))
            allowed = ", ".join(method.config_class.model_fields)
            raise ValueError(f"field {where!r}: {first.get('msg')} (allowed in {method.name}: {allowed})") from None
        data_class = getattr(method.config_class, "data_config", None)
        if data_class is not None and isinstance(values.get("data"), dict):
            try:
                values["data"] = data_class.model_validate(values["data"])
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in ("data", *first.get("loc", ())))
                allowed = ", ".join(data_class.model_fields)
                raise ValueError(f"field {where!r}: {first.get('msg')} (allowed in data for {method.name}: {allowed})") from None
        return values

    @field_validator("base", "output")
    @classmethod
    def _registry_ids(cls, value: str) -> str:
        # Checked before training starts: an invalid `output` must not cost a whole run.
        from agentkit.registry.card import validate_entry_id

        try:
            return validate_entry_id(value)
        except BadInputError as exc:
            raise ValueError(exc.one_line()) from None

    def to_yaml_dict(self) -> dict[str, Any]:
        """The config as written in tune.yaml (method block under its own name), for lineage."""
        data = self.model_dump(mode="json", exclude={"method_config"})
        data[self.method] = self.method_config.model_dump(mode="json")
        return data

    @classmethod
    def from_yaml(cls, path: str | Path) -> TuneConfig:
        from agentkit.config_io import load_model_file

        path = Path(path)

        def relative_to_the_file(raw: dict[str, Any]) -> dict[str, Any]:
            # Relative data paths are relative to the config file, as a user reading it expects.
            data = raw.get("data")
            if isinstance(data, dict):
                for key in ("train", "eval"):
                    if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                        data[key] = str((path.parent / data[key]).resolve())
            return raw

        return load_model_file(cls, path, what="tune config", prepare=relative_to_the_file,
                               fix="correct those fields (examples/*/tune.yaml show every field).")  # fmt: skip

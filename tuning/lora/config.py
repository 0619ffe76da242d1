"""LoRA's block in tune.yaml, mapped onto `peft.LoraConfig` (DoRA and rsLoRA are switches), and
`method: lora`'s own block, which can continue from an existing adapter (`init_adapter`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_serializer, model_validator

from agentkit.tuning.methods import TrainerMethodConfig


class LoraMethodConfig(TrainerMethodConfig):
    """LoRA's settings, the one shape of every block that trains a LoRA: `lora:` itself, and the
    `lora:` inside sft, dpo, reward, ppo, grpo and rloo."""

    r: int = Field(default=8, gt=0, description="rank of the update matrices")
    alpha: float = Field(default=16, gt=0, description="scaling: the update is multiplied by alpha / r")
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = Field(
        default="all-linear", description="'all-linear' or module names such as [q_proj, v_proj]"
    )
    use_dora: bool = Field(default=False, description="weight-decomposed LoRA (DoRA)")
    use_rslora: bool = Field(default=False, description="rank-stabilised scaling alpha / sqrt(r)")
    bias: str = Field(default="none", pattern="^(none|all|lora_only)$")

    def to_peft(self, task: str) -> Any:
        from peft import LoraConfig, TaskType

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            use_dora=self.use_dora,
            use_rslora=self.use_rslora,
            bias=self.bias,
            task_type=TaskType.CAUSAL_LM if task == "causal_lm" else TaskType.SEQ_CLS,
        )


class PreferenceLoraConfig(LoraMethodConfig):
    """The LoRA of the preference stages (reward, dpo): the same fields, defaults sized for a few
    hundred pairs (rank 16, alpha 32, no dropout)."""

    r: int = Field(default=16, gt=0, description="rank of the update matrices")
    alpha: float = Field(default=32, gt=0, description="scaling: the update is multiplied by alpha / r")
    dropout: float = Field(default=0.0, ge=0, lt=1)


LORA_FIELDS = ("r", "alpha", "dropout", "target_modules", "use_dora", "use_rslora", "bias")
# The warning points past pydantic's validator frames, at the code that validated the config.
_USER_LEVEL = 6


def nest_flat_lora_keys(values: Any, block: str, *, ignored_under_full: bool = True) -> Any:
    """A block written before LoRA settings had one shape (`sft: {r: 8}`, `dpo: {r: 16, alpha: 32}`):
    its flat LoRA keys move under `lora:`, with a FutureWarning naming the new shape. Under
    `peft: full` they are dropped with that warning, as they were ignored before; or, where they
    were refused before (`ignored_under_full` False: reward), refused by the key as written."""
    if not isinstance(values, dict):
        return values
    flat = [key for key in LORA_FIELDS if key in values]
    if not flat:
        return values
    import warnings

    if values.get("peft") == "full":
        if not ignored_under_full:
            raise ValueError(f"{block}.{flat[0]} applies to peft: lora only; remove it or set peft: lora")
        warnings.warn(f"{block}: {', '.join(flat)} ignored: they are LoRA settings, and peft is full",
                      FutureWarning, stacklevel=_USER_LEVEL)  # fmt: skip
        return {k: v for k, v in values.items() if k not in flat}
    if isinstance(values.get("lora"), dict) and set(flat) & set(values["lora"]):
        raise ValueError(f"{block}.{flat[0]} and {block}.lora.{flat[0]} are both set; keep {block}.lora.{flat[0]}")
    values = dict(values)
    nested = dict(values.get("lora") or {})
    nested.update({key: values.pop(key) for key in flat})
    values["lora"] = nested
    warnings.warn(f"{block}: LoRA settings ({', '.join(flat)}) belong in a `lora:` block inside {block}: "
                  f"write `{block}: {{lora: {{{flat[0]}: ...}}}}`", FutureWarning, stacklevel=_USER_LEVEL)  # fmt: skip
    return values


class LoraOrFull(BaseModel):
    """A block that trains a LoRA (`peft: lora`, its settings under `lora:`) or every weight
    (`peft: full`): sft, reward and dpo. Subclasses declare `peft` and `lora` (their own defaults)
    and name their block in `block`."""

    model_config = ConfigDict(extra="forbid")
    block: ClassVar[str]
    flat_keys_ignored_under_full: ClassVar[bool] = True  # False: refused, as reward did before

    @model_validator(mode="before")
    @classmethod
    def _flat_lora_keys(cls, values: Any) -> Any:
        return nest_flat_lora_keys(values, cls.block, ignored_under_full=cls.flat_keys_ignored_under_full)

    @model_serializer(mode="wrap")
    def _no_lora_when_full(self, handler: Any) -> Any:
        # A full run trains no LoRA: its recorded config (lineage) carries no `lora:` block, so it
        # validates again as written.
        data = handler(self)
        if getattr(self, "peft") == "full" and isinstance(data, dict):
            data.pop("lora", None)
        return data

    @model_validator(mode="after")
    def _lora_needs_lora(self) -> LoraOrFull:
        if getattr(self, "peft") == "full" and "lora" in self.model_fields_set:
            raise ValueError(f"{self.block}.lora applies to peft: lora only; remove it or set peft: lora")
        return self


# What a LoRA's weights were trained as: a run continuing from them has to keep all of these.
# (dropout is a training setting only, so a continued run may change it.)
WEIGHT_SHAPING_FIELDS = ("r", "alpha", "target_modules", "use_dora", "use_rslora", "bias")


class LoraTuneConfig(LoraMethodConfig):
    """`method: lora`'s block. A subclass rather than a field on LoraMethodConfig, so the blocks that
    embed LoRA settings (sft, ppo.lora, grpo.lora) do not accept an `init_adapter` they would ignore."""

    init_adapter: str | None = Field(
        default=None,
        description="registry id of a LoRA adapter of the same base to continue training: its weights are "
        "the starting point, and its r, alpha, target_modules, use_dora, use_rslora and bias are used "
        "(setting one of those to another value is refused); dropout stays this block's",
    )
    # The adapter's folder, filled in by `continuing` once the registry checks passed (Run.prepare).
    _init_dir: Path | None = PrivateAttr(default=None)

    @field_validator("init_adapter")
    @classmethod
    def _registry_id(cls, value: str | None) -> str | None:
        from agentkit.errors import BadInputError
        from agentkit.registry.card import validate_entry_id

        try:
            return None if value is None else validate_entry_id(value)
        except BadInputError as exc:
            raise ValueError(exc.one_line()) from None

    @property
    def init_dir(self) -> Path | None:
        return self._init_dir

    def make_trainable(self, model: Any, task: str) -> Any:
        if self.init_adapter is not None:
            from agentkit.tuning.lora.init_adapter import load_init_adapter

            return load_init_adapter(model, self)
        return super().make_trainable(model, task)

    def continuing(self, settings: dict[str, Any], folder: Path) -> LoraTuneConfig:
        """A copy that trains on from the adapter in `folder`, with its weight-shaping `settings`
        (so the new card's lineage records what was really trained, not this block's defaults)."""
        config = type(self).model_validate({**self.model_dump(), **settings})
        config._init_dir = folder
        return config

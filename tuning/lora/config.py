"""LoRA's block in tune.yaml, mapped onto `peft.LoraConfig` (DoRA and rsLoRA are switches), and
`method: lora`'s own block, which can continue from an existing adapter (`init_adapter`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


class LoraMethodConfig(BaseModel):
    """LoRA's settings, shared by every block that trains a LoRA (lora, sft, ppo.lora, grpo.lora)."""

    model_config = ConfigDict(extra="forbid")

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

    def continuing(self, settings: dict[str, Any], folder: Path) -> LoraTuneConfig:
        """A copy that trains on from the adapter in `folder`, with its weight-shaping `settings`
        (so the new card's lineage records what was really trained, not this block's defaults)."""
        config = type(self).model_validate({**self.model_dump(), **settings})
        config._init_dir = folder
        return config

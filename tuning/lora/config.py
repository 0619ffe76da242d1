"""LoRA's block in tune.yaml, mapped onto `peft.LoraConfig` (DoRA and rsLoRA are switches)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LoraMethodConfig(BaseModel):
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

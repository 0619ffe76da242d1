"""The `dpo:` block: Direct Preference Optimisation through TRL's DPOTrainer, the offline
alternative to reward model + PPO; LoRA by default, the reference being the adapter-free model."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tuning.preference import PreferenceDataConfig


class DpoMethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_config: ClassVar[type[BaseModel]] = PreferenceDataConfig  # the `data:` block reads pairs

    peft: Literal["lora", "full"] = Field(
        default="lora",
        description="lora: a LoRA adapter, reference = the model with the adapter disabled; "
        "full: every weight trains against a frozen copy (a base entry)",
    )
    beta: float = Field(
        default=0.1, gt=0, description="strength of the pull towards the reference (DPO's beta)"
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        default="sigmoid", description="sigmoid: the DPO paper's loss; ipo / hinge / robust: TRL's variants"
    )
    r: int = Field(default=16, gt=0, description="LoRA rank (peft: lora; ignored when `base` is a LoRA adapter, "
                   "which DPO then continues)")  # fmt: skip
    alpha: float = Field(default=32, gt=0, description="LoRA scaling alpha / r")
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: str | list[str] = Field(default="all-linear", description="LoRA target modules")

    def to_peft(self) -> Any:
        from peft import LoraConfig, TaskType

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type=TaskType.CAUSAL_LM)  # fmt: skip

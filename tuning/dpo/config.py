"""The `dpo:` block: Direct Preference Optimisation through TRL's DPOTrainer, the offline
alternative to reward model + PPO; LoRA by default, the reference being the adapter-free model."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from agentkit.tuning.lora.config import LoraOrFull, PreferenceLoraConfig
from agentkit.tuning.preference import PreferenceDataConfig


class DpoMethodConfig(LoraOrFull):
    block: ClassVar[str] = "dpo"
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
    lora: PreferenceLoraConfig = Field(
        default_factory=PreferenceLoraConfig,
        description="the LoRA (peft: lora; not used when `base` is a LoRA adapter, which DPO then continues)",
    )

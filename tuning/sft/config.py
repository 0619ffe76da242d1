"""The `sft:` block: RLHF step 1 is supervised fine-tuning, LoRA by default or every weight."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from agentkit.tuning.lora.config import LoraMethodConfig, LoraOrFull
from agentkit.tuning.methods import TrainerMethodConfig


class SftMethodConfig(TrainerMethodConfig, LoraOrFull):
    """What trains: a LoRA (`peft: lora`, its settings under `lora:`) or every weight."""

    block: ClassVar[str] = "sft"

    peft: Literal["lora", "full"] = Field(
        default="lora",
        description="lora: a LoRA adapter on the base; full: every weight trains (a new base entry)",
    )
    lora: LoraMethodConfig = Field(default_factory=LoraMethodConfig, description="the LoRA (peft: lora)")

    def to_peft(self, task: str) -> Any:
        return None if self.peft == "full" else self.lora.to_peft(task)

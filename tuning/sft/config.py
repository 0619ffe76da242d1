"""The `sft:` block: RLHF step 1 is supervised fine-tuning, LoRA by default or every weight."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentkit.tuning.lora.config import LoraMethodConfig


class SftMethodConfig(LoraMethodConfig):
    """LoRA's fields (used when `peft: lora`) plus the choice of what trains."""

    peft: Literal["lora", "full"] = Field(
        default="lora",
        description="lora: a LoRA adapter on the base; full: every weight trains (a new base entry)",
    )

"""`sft`: RLHF step 1, supervised fine-tuning through the shared HF Trainer path -- LoRA by default
(`peft: lora`, an adapter) or every weight (`peft: full`, a new base entry)."""

from __future__ import annotations

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.sft.config import SftMethodConfig

register_method(TuningMethod(name="sft", config_class=SftMethodConfig, tasks=frozenset({"causal_lm"}),
                             why_not="SFT trains a chat model"))  # fmt: skip

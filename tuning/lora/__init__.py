"""LoRA (with DoRA / rsLoRA switches) through PEFT: low-rank updates on the base's linear layers."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.lora.config import LoraMethodConfig
from agentkit.tuning.methods import TuningMethod, register_method


def apply_lora(model: Any, config: LoraMethodConfig, task: str) -> Any:
    from peft import get_peft_model

    return get_peft_model(model, config.to_peft(task))


register_method(TuningMethod(name="lora", config_class=LoraMethodConfig, apply=apply_lora))

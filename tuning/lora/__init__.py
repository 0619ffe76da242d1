"""LoRA (with DoRA / rsLoRA switches) through PEFT: low-rank updates on the base's linear layers,
fresh or continued from a registered LoRA adapter (`init_adapter`)."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.lora.config import LoraTuneConfig
from agentkit.tuning.lora.init_adapter import load_init_adapter
from agentkit.tuning.methods import TuningMethod, register_method


def apply_lora(model: Any, config: LoraTuneConfig, task: str) -> Any:
    if config.init_adapter is not None:
        return load_init_adapter(model, config)
    from peft import get_peft_model

    return get_peft_model(model, config.to_peft(task))


register_method(TuningMethod(name="lora", config_class=LoraTuneConfig, apply=apply_lora))

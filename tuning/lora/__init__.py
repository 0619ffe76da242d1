"""LoRA (with DoRA / rsLoRA switches) through PEFT: low-rank updates on the base's linear layers,
fresh or continued from a registered LoRA adapter (`init_adapter`)."""

from __future__ import annotations

from agentkit.tuning.lora.config import LoraTuneConfig
from agentkit.tuning.methods import TuningMethod, register_method

register_method(TuningMethod(name="lora", config_class=LoraTuneConfig))

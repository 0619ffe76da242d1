"""LoRA (with DoRA / rsLoRA switches) through PEFT: low-rank updates on the base's linear layers,
fresh or continued from a registered LoRA adapter (`init_adapter`)."""

from __future__ import annotations

from agentkit.tuning.lora.config import LoraTuneConfig
from agentkit.tuning.methods import TuningMethod, register_method

# The rate chosen by measurement (bench/method_defaults.py): 3e-3 over-trains on unseen data, 2e-4 barely moves.
register_method(TuningMethod(name="lora", config_class=LoraTuneConfig, train_defaults={"learning_rate": 1e-3}))

"""Full fine-tuning: every weight trains; the result is a new base entry, not an adapter."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.methods import TrainerMethodConfig, TuningMethod, register_method


class FullMethodConfig(TrainerMethodConfig):
    def to_peft(self, task: str) -> Any:
        return None  # no PEFT: every weight trains


register_method(TuningMethod(name="full", config_class=FullMethodConfig))

"""Full fine-tuning: every weight trains; the result is a new base entry, not an adapter."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from agentkit.tuning.methods import TuningMethod, register_method


class FullMethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


def apply_full(model: Any, config: FullMethodConfig, task: str) -> Any:
    for param in model.parameters():
        param.requires_grad_(True)
    return model


register_method(TuningMethod(name="full", config_class=FullMethodConfig, apply=apply_full, produces_adapter=False))

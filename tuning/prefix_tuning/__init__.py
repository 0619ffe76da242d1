"""Prefix Tuning (Li & Liang, 2021): trained key/value prefixes on every layer, produced through an
MLP re-parameterisation (`prefix_projection=True`) that steadies training."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.prompt_learning import VirtualTokensConfig, peft_task


class PrefixTuningMethodConfig(VirtualTokensConfig):
    encoder_hidden_size: int = Field(default=256, gt=0, description="width of the re-parameterisation MLP")

    def to_peft(self, task: str) -> Any:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(task_type=peft_task(task), num_virtual_tokens=self.num_virtual_tokens,
                                  prefix_projection=True, encoder_hidden_size=self.encoder_hidden_size)  # fmt: skip


register_method(TuningMethod(
    name="prefix_tuning", config_class=PrefixTuningMethodConfig,
    train_defaults={"learning_rate": 1e-3},  # its MLP diverges at 3e-3 (bench/method_defaults.py)
    tasks=frozenset({"causal_lm"}),
    why_not="transformers 5 encoders (BERT, MiniLM) take no past key values, and prefixes are trained past key values",
))

"""P-Tuning (Liu et al., 2021): virtual tokens produced by a prompt encoder (MLP or LSTM) and
inserted at the input layer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.prompt_learning import VirtualTokensConfig, peft_task


class PTuningMethodConfig(VirtualTokensConfig):
    encoder: Literal["mlp", "lstm"] = "mlp"
    encoder_hidden_size: int = Field(default=256, gt=0)

    def to_peft(self, task: str) -> Any:
        from peft import PromptEncoderConfig, PromptEncoderReparameterizationType

        kind = PromptEncoderReparameterizationType.MLP if self.encoder == "mlp" else PromptEncoderReparameterizationType.LSTM
        return PromptEncoderConfig(task_type=peft_task(task), num_virtual_tokens=self.num_virtual_tokens,
                                   encoder_reparameterization_type=kind, encoder_hidden_size=self.encoder_hidden_size)  # fmt: skip


# 1e-3: no rate tried beat it clearly (bench/method_defaults.py); P-Tuning moves little on SmolLM2.
register_method(TuningMethod(name="p_tuning", config_class=PTuningMethodConfig, train_defaults={"learning_rate": 1e-3}))

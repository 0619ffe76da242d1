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


def apply_p_tuning(model: Any, config: PTuningMethodConfig, task: str) -> Any:
    from peft import PromptEncoderConfig, PromptEncoderReparameterizationType, get_peft_model

    kind = PromptEncoderReparameterizationType.MLP if config.encoder == "mlp" else PromptEncoderReparameterizationType.LSTM
    return get_peft_model(model, PromptEncoderConfig(
        task_type=peft_task(task), num_virtual_tokens=config.num_virtual_tokens,
        encoder_reparameterization_type=kind, encoder_hidden_size=config.encoder_hidden_size,
    ))  # fmt: skip


register_method(TuningMethod(name="p_tuning", config_class=PTuningMethodConfig, apply=apply_p_tuning))

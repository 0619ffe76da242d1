"""Shared pieces of the prompt-learning methods (prefix, prompt, P-Tuning, P-Tuning v2): they
train virtual tokens in front of the input and leave every base weight frozen."""

from __future__ import annotations

from pydantic import Field

from agentkit.tuning.methods import TrainerMethodConfig


class VirtualTokensConfig(TrainerMethodConfig):
    num_virtual_tokens: int = Field(default=20, gt=0, le=512, description="length of the trained prompt")


def peft_task(task: str):  # noqa: ANN201 - peft.TaskType, imported lazily
    from peft import TaskType

    return TaskType.CAUSAL_LM if task == "causal_lm" else TaskType.SEQ_CLS

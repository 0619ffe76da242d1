"""The blocks of the TRL group-sampling stages (`grpo:`, `rloo:`): G completions per prompt, each
scored by the trained reward model; the advantage is the completion's score against its group's."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tuning.lora.config import LoraMethodConfig
from agentkit.tuning.preference import PreferenceDataConfig


class GroupMethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_config: ClassVar[type[BaseModel]] = PreferenceDataConfig  # prompts: a preference or prompt file

    reward_model: str = Field(description="registry id of the reward model (the `reward` stage's output)")
    lora: LoraMethodConfig = Field(default_factory=LoraMethodConfig, description="the fresh LoRA on the policy")
    num_generations: int = Field(
        default=4, ge=2, description="completions per prompt (the group); train.batch_size must be a multiple"
    )
    max_new_tokens: int = Field(default=32, gt=0, description="completion length cap, tokens")
    temperature: float = Field(default=1.0, gt=0)
    beta: float = Field(default=0.04, ge=0, description="KL coefficient against the reference (the SFT model, LoRA off)")
    num_iterations: int = Field(default=1, gt=0, description="optimisation passes over each batch of completions")
    epsilon: float = Field(default=0.2, gt=0, description="ratio clip")


class GRPOMethodConfig(GroupMethodConfig):
    """GRPO (Shao et al. 2024): advantage = (score - group mean) / group std."""

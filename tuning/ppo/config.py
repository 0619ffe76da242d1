"""PPO's block in tune.yaml (`ppo:`): the reward model, the fresh LoRA on the policy, sampling,
and the PPO / GAE / KL-control knobs (defaults after InstructGPT and DeepSpeed-Chat, CPU-sized)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.tuning.lora.config import LoraMethodConfig
from agentkit.tuning.preference import PreferenceDataConfig


class SamplingConfig(BaseModel):
    """How rollouts are sampled from the policy."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=32, gt=0, description="response length cap, tokens")
    temperature: float = Field(default=1.0, gt=0, description="1.0 samples from the policy itself, as PPO assumes")
    top_k: int = Field(default=0, ge=0, description="0: no top-k cut (a cut makes rollouts off-policy)")
    top_p: float = Field(default=1.0, gt=0, le=1)


class PPOMethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # `data:` is a preference file (its prompts are used) or a prompt file (.txt / .jsonl).
    data_config: ClassVar[type[BaseModel]] = PreferenceDataConfig

    reward_model: str = Field(description="registry id of the reward model (the `reward` stage's output)")
    lora: LoraMethodConfig = Field(default_factory=LoraMethodConfig, description="the fresh LoRA on the policy")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    ppo_epochs: int = Field(default=4, gt=0, description="optimisation passes over each batch of rollouts")
    mini_batch_size: int | None = Field(
        default=None, gt=0, description="rollouts per gradient step within a PPO epoch; None: the whole batch"
    )
    gamma: float = Field(default=1.0, ge=0, le=1, description="discount over response tokens")
    lam: float = Field(default=0.95, ge=0, le=1, description="GAE lambda: bias (0) vs variance (1)")
    clip_range: float = Field(default=0.2, gt=0, description="policy ratio clip epsilon")
    clip_range_value: float = Field(default=0.2, gt=0, description="value prediction clip, around the rollout's value")
    vf_coef: float = Field(default=0.1, ge=0, description="weight of the value loss in the total loss")
    init_kl_coef: float = Field(default=0.1, ge=0, description="beta: per-token KL penalty against the reference")
    adaptive_kl: bool = Field(default=True, description="Ziegler et al.'s controller steers beta towards target_kl")
    target_kl: float = Field(default=4.0, gt=0, description="target KL(policy || reference), nats per response")
    kl_horizon: int = Field(
        default=10000, gt=0,
        description="controller horizon, in rollouts: over a run beta can move by at most a factor "
        "e^(0.2 * rollouts / horizon), so Ziegler's 10,000 keeps it all but fixed in a CPU run of a few "
        "hundred rollouts; about rollouts / 5 lets it react",
    )  # fmt: skip
    whiten_advantages: bool = True
    score_clip: float | None = Field(default=None, gt=0, description="clip reward-model scores to +-this")
    value_learning_rate: float | None = Field(
        default=None, gt=0, description="learning rate of the value head; None: train.learning_rate"
    )

    @model_validator(mode="after")
    def _lora_is_plain(self) -> PPOMethodConfig:
        # The registered adapter folds the SFT LoRA and this one into one LoRA (ranks concatenated),
        # which is exact only for plain LoRA: DoRA's magnitude vector does not add up that way.
        if self.lora.use_dora:
            raise ValueError("ppo.lora.use_dora is not supported (the result is folded into one LoRA); set it false")
        return self

"""PPO's block in tune.yaml (`ppo:`): the reward model, the fresh LoRA on the policy, sampling,
and the PPO / GAE / KL-control knobs (defaults after InstructGPT and DeepSpeed-Chat, CPU-sized)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.tuning.lora.config import LoraMethodConfig
from agentkit.tuning.preference import PreferenceDataConfig


KL_BUDGET_WINDOW = 3  # batches averaged for ppo.kl_budget: one batch's KL is a noisy estimate


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
    samples_per_prompt: int = Field(
        default=1, ge=1,
        description="responses sampled per prompt in each batch; train.batch_size counts responses and must be a "
        "multiple (batch_size / samples_per_prompt prompts per step). >= 2 allows a per-prompt baseline",
    )  # fmt: skip
    baseline: Literal["none", "mean", "leave_one_out"] = Field(
        default="none",
        description="per-prompt baseline subtracted from each score before the KL penalty and GAE: the mean score "
        "of the prompt's samples, or the mean of its other samples (RLOO). Most of the score variance is the "
        "prompt's; needs samples_per_prompt >= 2",
    )  # fmt: skip
    reward_norm: bool = Field(
        default=False,
        description="divide scores by the running std of all scores seen (and subtract the running mean when no "
        "per-prompt baseline is used), so beta trades KL against a score of unit scale",
    )  # fmt: skip
    value_init: Literal["zero", "reward_head"] = Field(
        default="zero",
        description="the value head on the policy's last hidden state: zero weights with the bias at the first "
        "batch's mean score, or the reward model's score head copied (InstructGPT starts the critic from the "
        "reward model; here on the policy's trunk, so exact only where the reward model kept the base's layers)",
    )  # fmt: skip
    value_trunk: Literal["shared", "detached"] = Field(
        default="shared",
        description="shared: the value loss trains the policy's LoRA too (one trunk, as TRL's old PPO); detached: "
        "the value head reads the trunk's states without a gradient, so only the policy loss moves the policy, "
        "and the two gradient norms are clipped apart (a separate critic in effect, as InstructGPT's, at no "
        "extra forward pass)",
    )  # fmt: skip
    kl_budget: float | None = Field(
        default=None, gt=0,
        description="stop the run early once the KL to the reference, nats per response averaged over the "
        f"last {KL_BUDGET_WINDOW} batches, passes this; the policy that sampled the last batch is registered. KL "
        "is still rising when the mean crosses, so that policy can land over the budget: by up to 0.85 nats on "
        "held-out prompts in bench/ppo_eval.py (set it half a nat or more under a hard limit). Gao et al. (2022) "
        "measure RLHF's gain against the KL spent; this spends a set amount, whatever beta and the learning rate "
        "do. None: train.max_steps",
    )  # fmt: skip
    save_steps: int = Field(
        default=10, ge=0,
        description="write a resumable checkpoint (LoRA, value head, optimizer, step, KL controller, RNG) into "
        "runs/<output>/ every N steps; 0: none",
    )  # fmt: skip
    save_total_limit: int = Field(default=2, gt=0, description="checkpoints kept (the newest)")

    @model_validator(mode="after")
    def _lora_is_plain(self) -> PPOMethodConfig:
        # The registered adapter folds the SFT LoRA and this one into one LoRA (ranks concatenated),
        # which is exact only for plain LoRA: DoRA's magnitude vector does not add up that way.
        if self.lora.use_dora:
            raise ValueError("ppo.lora.use_dora is not supported (the result is folded into one LoRA); set it false")
        if self.baseline != "none" and self.samples_per_prompt < 2:
            raise ValueError(f"ppo.baseline={self.baseline!r} needs ppo.samples_per_prompt >= 2 (one sample has no "
                             "per-prompt mean to subtract); set samples_per_prompt: 4")  # fmt: skip
        return self

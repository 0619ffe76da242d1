"""Per-token rewards, masked statistics and GAE for PPO on language models.

Shapes: B rollouts, R response tokens; `mask` (B, R) is 1 up to and including the first EOS.
"""

from __future__ import annotations

from typing import Any


def masked_mean(values: Any, mask: Any, dim: int | None = None) -> Any:
    """Mean over the positions where mask is 1 (all of them, or along `dim`)."""
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: Any, mask: Any) -> Any:
    """Unbiased variance over the masked positions (Bessel's n / (n - 1): batches are small)."""
    mean = masked_mean(values, mask)
    n = mask.sum()
    var = masked_mean((values - mean) ** 2, mask)
    return var * n / (n - 1).clamp(min=1)


def masked_whiten(values: Any, mask: Any, shift_mean: bool = True) -> Any:
    """(x - mean) / std over the masked positions; masked-out positions come back as 0.

    Whitening advantages per batch keeps the policy step size independent of the reward
    model's scale; `shift_mean=False` only rescales (for rewards, whose sign matters)."""
    import torch

    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def token_rewards(scores: Any, logprobs: Any, ref_logprobs: Any, mask: Any, kl_coef: float) -> tuple[Any, Any]:
    """InstructGPT's reward: -beta * KL per token, plus the reward-model score on the last token.

    scores (B,), logprobs / ref_logprobs / mask (B, R). The KL term is the sampled estimate
    log pi(a|s) - log pi_ref(a|s) of the token actually drawn. Returns (rewards (B, R), kl (B, R))."""
    import torch

    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    # The last real token: index of the final 1 in each row (a response is never empty: it holds
    # at least one token, EOS included).
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards = rewards.clone()
    rewards[torch.arange(rewards.shape[0]), last] += scores
    return rewards * mask, kl


def gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimation (Schulman et al. 2016) along the response.

    delta_t = r_t + gamma * V_{t+1} - V_t; A_t = delta_t + gamma * lam * A_{t+1}, with V = 0 past
    the end (the episode ends at EOS). Returns (advantages, returns = advantages + values), (B, R),
    both 0 where mask is 0."""
    import torch

    values = values * mask
    rewards = rewards * mask
    length = rewards.shape[-1]
    advantages_reversed = []
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages_reversed.append(last)
    advantages = torch.stack(advantages_reversed[::-1], dim=1) * mask
    return advantages, (advantages + values) * mask


def per_prompt_baseline(scores: Any, samples_per_prompt: int, kind: str) -> Any:
    """The baseline of each score from its prompt's other samples, (B,) -> (B,).

    `scores` holds each prompt's samples next to each other (B = prompts * samples_per_prompt).
    "mean": the prompt's mean score; "leave_one_out": the mean of the prompt's other samples
    (RLOO, Kool et al. 2019: unbiased, as the baseline does not depend on the sample it is
    subtracted from); "none": zeros."""
    import torch

    if kind == "none":
        return torch.zeros_like(scores)
    k = samples_per_prompt
    if k < 2 or scores.shape[0] % k:
        raise ValueError(f"{scores.shape[0]} scores are not groups of samples_per_prompt={k} >= 2")
    groups = scores.reshape(-1, k)
    total = groups.sum(-1, keepdim=True)
    if kind == "mean":
        base = (total / k).expand_as(groups)
    elif kind == "leave_one_out":
        base = (total - groups) / (k - 1)
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    return base.reshape(-1)


class RunningMoments:
    """Running mean and std of every score seen (Chan et al.'s parallel update, batch by batch)."""

    def __init__(self) -> None:
        self.count, self.mean, self.var = 0, 0.0, 1.0

    def update(self, values: list[float]) -> None:
        n = len(values)
        if not n:
            return
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / n
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> float:
        return max(self.var, 1e-8) ** 0.5

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.var = int(state["count"]), float(state["mean"]), float(state["var"])

"""PPO's clipped objectives (Schulman et al. 2017) and the per-token log-probs / entropy they use.

Shapes: B rollouts, R response tokens, V vocabulary; masks are (B, R) floats."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.ppo.advantages import masked_mean


def logprobs_of(logits: Any, tokens: Any) -> Any:
    """log pi(token) from logits (B, R, V) for tokens (B, R) -> (B, R), in float32."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_of(logits: Any) -> Any:
    """Entropy of each next-token distribution, (B, R, V) -> (B, R), nats."""
    import torch

    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def policy_loss(logprobs: Any, old_logprobs: Any, advantages: Any, mask: Any, clip_range: float) -> tuple[Any, Any]:
    """Clipped surrogate: mean of max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)).

    Returns (loss, clip fraction: the share of tokens where the clipped term was the larger)."""
    import torch

    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_fraction


def value_loss(values: Any, old_values: Any, returns: Any, mask: Any, clip_range_value: float) -> tuple[Any, Any]:
    """Clipped value loss: 0.5 * mean of max((V - G)^2, (V_clipped - G)^2), with V_clipped kept
    within clip_range_value of the rollout's value, so one batch cannot drag the critic far.

    Returns (loss, clip fraction)."""
    import torch

    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)

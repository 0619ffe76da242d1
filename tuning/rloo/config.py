"""The `rloo:` block: the group-sampling settings GRPO has (the loop is theirs too, tuning/grpo/trl_loop.py);
only the baseline differs."""

from __future__ import annotations

from agentkit.tuning.grpo.config import GroupMethodConfig


class RLOOMethodConfig(GroupMethodConfig):
    """RLOO (Ahmadian et al. 2024): advantage = score - mean of the other G - 1 scores."""

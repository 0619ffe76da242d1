"""`reward`: RLHF step 2, a reward model -- a one-score sequence-classification head on the causal
base (or the SFT entry), trained on chosen / rejected pairs; LoRA + head, or full / top layers."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.reward.config import RewardMethodConfig


def _run(config: Any, registry: Any, *, resume: bool, progress: bool) -> Any:
    from agentkit.tuning.reward.trainer import run_reward

    return run_reward(config, registry, resume=resume, progress=progress)


register_method(TuningMethod(name="reward", config_class=RewardMethodConfig, run=_run))

"""`reward`: RLHF step 2, a reward model -- a one-score sequence-classification head on the causal
base (or the SFT entry), trained on chosen / rejected pairs; LoRA + head, or full / top layers."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.reward.config import RewardMethodConfig, linear_leaf_names


def _run(config: Any, registry: Any, *, resume: bool, progress: bool) -> Any:
    from agentkit.tuning.reward.trainer import run_reward

    return run_reward(config, registry, resume=resume, progress=progress)


def _apply(model: Any, config: RewardMethodConfig, task: str) -> Any:
    from peft import get_peft_model

    return get_peft_model(model, config.to_peft(len(model.base_model.layers), linear_leaf_names(model)))


register_method(TuningMethod(name="reward", config_class=RewardMethodConfig, apply=_apply, run=_run))

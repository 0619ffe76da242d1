"""RLOO through TRL's RLOOTrainer, with the trained reward model as the reward function (the loop
is GRPO's, in tuning/grpo/trl_loop.py; only the baseline differs)."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.rloo.config import RLOOMethodConfig
from agentkit.tuning.methods import TuningMethod, register_method


def _run(config: Any, registry: Any, *, resume: bool = False, progress: bool = False) -> Any:
    from agentkit.tuning.grpo.trl_loop import run_group_method

    return run_group_method(config, registry, resume=resume, progress=progress)


register_method(TuningMethod(name="rloo", config_class=RLOOMethodConfig, run=_run,
                             tasks=frozenset({"causal_lm"}), why_not="RLOO trains a chat policy"))  # fmt: skip

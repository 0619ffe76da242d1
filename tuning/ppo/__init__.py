"""PPO (InstructGPT / DeepSpeed-Chat step 3) of agentkit's own: TRL 1.16 no longer ships one.

The policy is the SFT entry with a fresh LoRA; the reference is the same model with the LoRA off."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.ppo.config import PPOMethodConfig


def _run(config: Any, registry: Any, *, resume: bool = False, progress: bool = False) -> Any:
    from agentkit.tuning.ppo.trainer import run_ppo  # torch-heavy: imported when a run starts

    return run_ppo(config, registry, resume=resume, progress=progress)


register_method(
    TuningMethod(
        name="ppo", config_class=PPOMethodConfig, run=_run, tasks=frozenset({"causal_lm"}),
        why_not="PPO trains a chat policy",
    )
)  # fmt: skip

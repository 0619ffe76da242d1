"""`dpo`: Direct Preference Optimisation on chosen / rejected pairs through TRL's DPOTrainer;
registered as a LoRA adapter (or, with `peft: full`, a base entry) with lineage to its start."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.dpo.config import DpoMethodConfig
from agentkit.tuning.methods import TuningMethod, register_method


def _run(config: Any, registry: Any, *, resume: bool, progress: bool) -> Any:
    from agentkit.tuning.dpo.trainer import run_dpo

    return run_dpo(config, registry, resume=resume, progress=progress)


register_method(TuningMethod(name="dpo", config_class=DpoMethodConfig, run=_run,
                             tasks=frozenset({"causal_lm"}), why_not="DPO trains a chat model"))  # fmt: skip

"""agentkit.tuning: one folder per tuning method, one config (`tune.yaml`), one `train(config)`.

Results land in the registry as adapters (PEFT format) with their lineage. Installed as
`agentkit.tuning` (see pyproject package-dir).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit.lazy import lazy_exports

if TYPE_CHECKING:
    from agentkit.tuning.config import TrainConfig, TuneConfig
    from agentkit.tuning.methods import TuningMethod, register_method
    from agentkit.tuning.trainer import train

_LAZY = {
    "TuneConfig": "agentkit.tuning.config",
    "TrainConfig": "agentkit.tuning.config",
    "TuningMethod": "agentkit.tuning.methods",
    "register_method": "agentkit.tuning.methods",
    "train": "agentkit.tuning.trainer",
}
__all__ = ["TrainConfig", "TuneConfig", "TuningMethod", "register_method", "train"]


__getattr__ = lazy_exports(__name__, _LAZY)

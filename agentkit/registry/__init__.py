"""The local model registry: base models and adapters with cards, built-ins from PyPI packages."""

from agentkit.registry.builtins import BuiltinModel, builtin_specs, register_builtin
from agentkit.registry.card import (
    EntryKind,
    EvaluationEvent,
    EvaluationRecord,
    GgufFile,
    ModelCard,
    ModelTask,
    SourceInfo,
    Stage,
)
from agentkit.registry.store import Registry, default_home

__all__ = [
    "BuiltinModel",
    "EntryKind",
    "EvaluationEvent",
    "EvaluationRecord",
    "GgufFile",
    "ModelCard",
    "ModelTask",
    "Registry",
    "SourceInfo",
    "Stage",
    "builtin_specs",
    "default_home",
    "register_builtin",
]

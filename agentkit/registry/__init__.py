"""The local model registry: base models and adapters with cards, built-ins from PyPI packages."""

from agentkit.registry.builtins import BuiltinModel, builtin_specs, register_builtin
from agentkit.registry.card import EntryKind, GgufFile, ModelCard, ModelTask, SourceInfo
from agentkit.registry.store import Registry, default_home

__all__ = [
    "BuiltinModel",
    "EntryKind",
    "GgufFile",
    "ModelCard",
    "ModelTask",
    "Registry",
    "SourceInfo",
    "builtin_specs",
    "default_home",
    "register_builtin",
]

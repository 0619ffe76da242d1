"""The Models pillar: local chat models and embeddings over the registry, plus provider specs.

Imports are lazy so that `import agentkit.models` (and `agentkit --help`) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit.lazy import lazy_exports

if TYPE_CHECKING:
    from agentkit.models.chat_model import LocalChatModel
    from agentkit.models.classifier import LocalClassifier
    from agentkit.models.embeddings import LocalEmbeddings
    from agentkit.models.provider import ModelSpec, load_chat_model
    from agentkit.models.reward import RewardModel

_LAZY = {
    "LocalChatModel": "agentkit.models.chat_model",
    "LocalClassifier": "agentkit.models.classifier",
    "LocalEmbeddings": "agentkit.models.embeddings",
    "ModelSpec": "agentkit.models.provider",
    "load_chat_model": "agentkit.models.provider",
    "RewardModel": "agentkit.models.reward",
}
__all__ = ["LocalChatModel", "LocalClassifier", "LocalEmbeddings", "ModelSpec", "RewardModel", "load_chat_model"]


__getattr__ = lazy_exports(__name__, _LAZY)

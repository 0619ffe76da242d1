"""agentkit.chains: LCEL chains over local models -- RAG with citations, map-reduce summaries,
classification (adapter or label choice) and routing (by chain or adapter). Lazy imports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.chains.classify import classify_chain
    from agentkit.chains.rag import rag_chain
    from agentkit.chains.route import Route, route_chain
    from agentkit.chains.summarize import summarize_chain

_LAZY = {
    "rag_chain": "agentkit.chains.rag",
    "summarize_chain": "agentkit.chains.summarize",
    "classify_chain": "agentkit.chains.classify",
    "route_chain": "agentkit.chains.route",
    "Route": "agentkit.chains.route",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agentkit.chains' has no attribute {name!r}")

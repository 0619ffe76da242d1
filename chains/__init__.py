"""agentkit.chains: LCEL chains over local models -- RAG with citations, map-reduce summaries,
classification (adapter or label choice) and routing (by chain or adapter). Lazy imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit.lazy import lazy_exports

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
__all__ = ["Route", "classify_chain", "rag_chain", "route_chain", "summarize_chain"]


__getattr__ = lazy_exports(__name__, _LAZY)

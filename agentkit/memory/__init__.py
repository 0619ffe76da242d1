"""Conversation memory persisted in SQLite (window / summary strategies, `with_memory` for any chain)
and long-term vector memory for agents (`VectorMemory`: remember / recall, also as tools)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit.lazy import lazy_exports

if TYPE_CHECKING:
    from agentkit.memory.conversation import ConversationMemory, RunnableWithMemory, with_memory
    from agentkit.memory.store import ConversationStore, SessionHistory, sqlite_checkpointer
    from agentkit.memory.strategies import (
        MemoryStrategy,
        SummaryMemory,
        WindowMemory,
        memory_strategies,
        memory_strategy,
        register_memory_strategy,
    )
    from agentkit.memory.vector import VectorMemory

# Lazy: langchain-core and sqlite load on first use, not when `agentkit.memory` is imported.
_LAZY = {
    "ConversationMemory": "agentkit.memory.conversation",
    "RunnableWithMemory": "agentkit.memory.conversation",
    "with_memory": "agentkit.memory.conversation",
    "ConversationStore": "agentkit.memory.store",
    "SessionHistory": "agentkit.memory.store",
    "sqlite_checkpointer": "agentkit.memory.store",
    "MemoryStrategy": "agentkit.memory.strategies",
    "SummaryMemory": "agentkit.memory.strategies",
    "WindowMemory": "agentkit.memory.strategies",
    "memory_strategies": "agentkit.memory.strategies",
    "memory_strategy": "agentkit.memory.strategies",
    "register_memory_strategy": "agentkit.memory.strategies",
    "VectorMemory": "agentkit.memory.vector",
}
__all__ = [
    "ConversationMemory",
    "ConversationStore",
    "MemoryStrategy",
    "RunnableWithMemory",
    "SessionHistory",
    "SummaryMemory",
    "VectorMemory",
    "WindowMemory",
    "memory_strategies",
    "memory_strategy",
    "register_memory_strategy",
    "sqlite_checkpointer",
    "with_memory",
]


__getattr__ = lazy_exports(__name__, _LAZY)

"""agentkit.indexes: named document indexes (loaders, splitters, FAISS / Chroma backends) and retrievers.

`open_index(name).as_retriever(mode="hybrid", k=5)` is what a RAG chain calls; `agentkit index` is the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit.lazy import lazy_exports

if TYPE_CHECKING:
    from agentkit.indexes.backends import BackendSpec, VectorBackend, register_backend
    from agentkit.indexes.index import Index, create_index, list_indexes, open_index, remove_index
    from agentkit.indexes.ingest import AddReport
    from agentkit.indexes.loaders import FileFormat, register_format
    from agentkit.indexes.retrieval import IndexRetriever, RetrievalMode, SearchOptions
    from agentkit.indexes.spec import IndexSpec, SplitterKind, SplitterSpec

# Lazy: `import agentkit.indexes` must not pull in langchain, faiss or chromadb.
_LAZY = {
    "BackendSpec": "agentkit.indexes.backends",
    "VectorBackend": "agentkit.indexes.backends",
    "register_backend": "agentkit.indexes.backends",
    "Index": "agentkit.indexes.index",
    "create_index": "agentkit.indexes.index",
    "list_indexes": "agentkit.indexes.index",
    "open_index": "agentkit.indexes.index",
    "remove_index": "agentkit.indexes.index",
    "AddReport": "agentkit.indexes.ingest",
    "FileFormat": "agentkit.indexes.loaders",
    "register_format": "agentkit.indexes.loaders",
    "IndexRetriever": "agentkit.indexes.retrieval",
    "RetrievalMode": "agentkit.indexes.retrieval",
    "SearchOptions": "agentkit.indexes.retrieval",
    "IndexSpec": "agentkit.indexes.spec",
    "SplitterKind": "agentkit.indexes.spec",
    "SplitterSpec": "agentkit.indexes.spec",
}
__all__ = [
    "AddReport",
    "BackendSpec",
    "FileFormat",
    "Index",
    "IndexRetriever",
    "IndexSpec",
    "RetrievalMode",
    "SearchOptions",
    "SplitterKind",
    "SplitterSpec",
    "VectorBackend",
    "create_index",
    "list_indexes",
    "open_index",
    "register_backend",
    "register_format",
    "remove_index",
]


__getattr__ = lazy_exports(__name__, _LAZY)

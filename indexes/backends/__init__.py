"""Vector backends for indexes: the `VectorBackend` surface and one validating `register_backend`.

A backend is a LangChain `VectorStore` that also takes precomputed vectors by id (FAISS, Chroma).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agentkit.errors import BadInputError
from agentkit.extension import check_new_name

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

Filter = dict[str, Any]  # {"format": "md", "source": ["/a.md", "/b.md"]}: equality, or one of a list


class VectorBackend(ABC):
    """What an index needs from its vector store, beyond LangChain's `VectorStore` surface.

    Scores are cosine similarities (higher is closer). Ids are the index's chunk ids; adding an id
    that exists replaces it, so a re-run after a crash never duplicates.
    """

    @abstractmethod
    def add_vectors(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
    ) -> None: ...

    @abstractmethod
    def delete_ids(self, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def all_ids(self) -> set[str]: ...

    @abstractmethod
    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def search_vectors(
        self, vector: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[tuple[str, float]]:
        """The `k` nearest chunk ids with their cosine similarity, best first."""

    def flush(self) -> None:
        """Make everything added so far durable and fast to reopen (FAISS writes its index file)."""

    def drop(self) -> None:
        """Delete data kept outside the index folder (a collection on a Chroma server)."""

    def close(self) -> None:
        """Release files and connections."""


Open = Callable[[Path, BaseModel, "Embeddings | None", str], VectorBackend]


@dataclass(frozen=True)
class BackendSpec:
    """A backend: its options model (pydantic, extra="forbid") and how to open it on an index folder."""

    name: str
    options_class: type[BaseModel]
    open: Open  # (folder, options, embeddings, index name) -> backend
    description: str = ""

    def parse_options(self, options: dict[str, Any]) -> BaseModel:
        return self.options_class.model_validate(options)


_BACKENDS: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    """Add a vector backend; names are unique lower_snake_case and options forbid unknown fields."""
    check_new_name("index backend", spec.name, _BACKENDS)
    if spec.options_class.model_config.get("extra") != "forbid":
        raise BadInputError(
            f"Options class {spec.options_class.__name__} of backend {spec.name!r} accepts unknown fields.",
            fix='set model_config = ConfigDict(extra="forbid") so typos are reported by name.',
        )
    _BACKENDS[spec.name] = spec
    return spec


def get_backend(name: str) -> BackendSpec:
    _load_builtin_backends()
    if name not in _BACKENDS:
        raise BadInputError(
            f"Unknown index backend {name!r}.", fix=f"use one of: {', '.join(sorted(_BACKENDS))}."
        )
    return _BACKENDS[name]


def backend_names() -> list[str]:
    _load_builtin_backends()
    return sorted(_BACKENDS)


def _load_builtin_backends() -> None:
    # Importing a backend folder registers it; a new backend is a folder plus one line here.
    import agentkit.indexes.backends.chroma
    import agentkit.indexes.backends.faiss  # noqa: F401


def matches_filter(metadata: dict[str, Any], filter: Filter | None) -> bool:
    """The one filter semantics every backend and BM25 share: each key equal, or in a list."""
    if not filter:
        return True
    for key, wanted in filter.items():
        value = metadata.get(key)
        if isinstance(wanted, (list, tuple, set)):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def check_filter(filter: Filter | None) -> Filter | None:
    """Refuse operators we cannot apply the same way in every backend (and in BM25)."""
    if not filter:
        return None
    for key, wanted in filter.items():
        values = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        if key.startswith("$") or not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise BadInputError(
                f"Unsupported filter {key!r}: {wanted!r}.",
                fix='use {"field": value} or {"field": [value, ...]} with str/int/float/bool values.',
            )
    return dict(filter)

"""The FAISS backend (default): exact cosine search, persisted in the index folder.

Registered here; the store itself (and faiss) loads only when an index opens it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from agentkit.indexes.backends import BackendSpec, VectorBackend, register_backend

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings


class FaissOptions(BaseModel):
    """No options: one exact inner-product index of unit vectors (a flat index is exact, and at
    tens of thousands of chunks it answers in milliseconds)."""

    model_config = ConfigDict(extra="forbid")


def open_faiss(folder: Path, options: BaseModel, embeddings: Embeddings | None, name: str) -> VectorBackend:
    from agentkit.indexes.backends.faiss.store import FaissStore

    return FaissStore.load(folder / "faiss", embeddings)


register_backend(
    BackendSpec(
        name="faiss", options_class=FaissOptions, open=open_faiss, description="FAISS, on disk (default)"
    )
)

"""The Chroma backend: an embedded persistent client in the index folder, or a server by host/port.

Registered here; chromadb and langchain-chroma load only when an index opens it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydantic import BaseModel, ConfigDict, Field

from agentkit.indexes.backends import BackendSpec, VectorBackend, register_backend

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings


class ChromaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(
        default=None, description="Chroma server host; unset = embedded client in the index folder"
    )
    port: int | None = Field(default=None, gt=0, lt=65536, description="Chroma server port (default 8000)")
    collection: str | None = Field(default=None, description="collection name; default agentkit-<index name>")


def open_chroma(folder: Path, options: BaseModel, embeddings: Embeddings | None, name: str) -> VectorBackend:
    from agentkit.indexes.backends.chroma.store import ChromaStore

    options = cast(ChromaOptions, options)  # BackendSpec.parse_options built it from ChromaOptions
    collection = options.collection or f"agentkit-{name}"
    if options.host:
        return ChromaStore.connect(collection, embeddings, host=options.host, port=options.port)
    return ChromaStore.connect(collection, embeddings, path=folder / "chroma")


register_backend(
    BackendSpec(
        name="chroma",
        options_class=ChromaOptions,
        open=open_chroma,
        description="Chroma: embedded persistent client, or a server with host/port",
    )
)

"""`ChromaStore`: langchain-chroma's VectorStore plus what an index needs (vectors by id, id listing).

One class for the embedded client and a server; only the client differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_chroma import Chroma

from agentkit.errors import AgentkitError
from agentkit.indexes.backends import Filter, VectorBackend

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

# Chroma's HNSW reports cosine *distance* (1 - cos) when the collection is created with this space.
_COSINE = {"hnsw:space": "cosine"}
_PAGE = 5000  # ids per `get` page when listing a collection


class ChromaStore(Chroma, VectorBackend):
    """langchain-chroma's `Chroma`, plus precomputed-vector writes and id listing for indexes."""

    @classmethod
    def connect(
        cls,
        collection: str,
        embedding: Embeddings | None = None,
        *,
        path: str | Path | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> ChromaStore:
        """Embedded persistent client at `path`, a server at `host:port`, or in-memory when neither."""
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        try:
            if host is not None:
                client = chromadb.HttpClient(host=host, port=port or 8000, settings=settings)
                client.heartbeat()
            elif path is not None:
                client = chromadb.PersistentClient(path=str(path), settings=settings)
            else:
                client = chromadb.EphemeralClient(settings=settings)
        except Exception as exc:  # chromadb raises several types for "not reachable"
            where = f"a Chroma server at {host}:{port or 8000}" if host else f"the Chroma database at {path}"
            raise AgentkitError(
                f"Could not open {where}: {exc}.",
                fix=f"start it (`chroma run --host {host} --port {port or 8000} --path DIR`) or fix --host/--port."
                if host
                else "check that the folder is readable and not used by a different chromadb version.",
            ) from exc
        return cls(
            collection_name=collection,
            embedding_function=embedding,
            client=client,
            collection_metadata=_COSINE,
        )

    # ---- VectorBackend ------------------------------------------------------------------------
    def add_vectors(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        import numpy as np

        vectors = np.asarray(vectors, dtype=np.float32)
        step = self._client.get_max_batch_size()
        for start in range(0, len(ids), step):
            end = start + step
            self._collection.upsert(
                ids=list(ids[start:end]),
                embeddings=vectors[start:end],
                documents=list(texts[start:end]),
                metadatas=[m or None for m in metadatas[start:end]],  # Chroma refuses {}
            )

    def delete_ids(self, ids: Sequence[str]) -> None:
        step = self._client.get_max_batch_size()
        for start in range(0, len(ids), step):
            self._collection.delete(ids=list(ids[start : start + step]))

    def all_ids(self) -> set[str]:
        ids: set[str] = set()
        while True:
            page = self._collection.get(include=[], limit=_PAGE, offset=len(ids))["ids"]
            ids.update(page)
            if len(page) < _PAGE:
                return ids

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        if not ids:
            return {}
        got = self._collection.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
        return {
            i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"], strict=True)
        }

    def search_vectors(
        self, vector: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[tuple[str, float]]:
        import numpy as np

        if k <= 0:
            return []
        found = self._collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            where=chroma_where(filter),
            include=["distances"],
        )
        return [(i, 1.0 - float(d)) for i, d in zip(found["ids"][0], found["distances"][0], strict=True)]

    def drop(self) -> None:
        self.delete_collection()

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


def chroma_where(filter: Filter | None) -> dict[str, Any] | None:
    """Our filter ({"a": 1, "b": [2, 3]}) as a Chroma `where`; several keys need an explicit $and."""
    if not filter:
        return None
    clauses = [
        {key: {"$in": list(value)}} if isinstance(value, (list, tuple, set)) else {key: value}
        for key, value in filter.items()
    ]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}

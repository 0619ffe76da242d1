"""`VectorMemory`: long-term memory for agents (remember / recall) over embeddings + a FAISS index,
persisted under `$AGENTKIT_HOME/memory/vectors/<name>/` as a snapshot folder swapped in by rename."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkit.errors import BadInputError

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.tools import BaseTool
    from langchain_core.vectorstores import VectorStoreRetriever

FORMAT = "agentkit.vector_memory"
FORMAT_VERSION = 1
MANIFEST = "memory.json"
MetadataValue = str | int | float | bool | None


def _faiss_store(embeddings: Embeddings, index: Any, docs: dict[str, Document], rows: dict[int, str]) -> Any:
    """A langchain FAISS store over unit vectors, so the inner product is the cosine similarity."""
    with warnings.catch_warnings():
        # langchain-community warns on import that it is being sunset, and FAISS warns that L2
        # normalisation "is not applicable" to inner product, though it still normalises (wanted).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Normalizing L2 is not applicable")
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

        return FAISS(
            embeddings,
            index,
            InMemoryDocstore(docs),
            rows,  # FAISS row -> document id
            normalize_L2=True,
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )


class VectorMemory:
    """Texts an agent chose to keep, found again by meaning.

    Each `remember` re-reads the newest snapshot under a file lock, adds the text and writes a new
    snapshot, so several processes can share one memory. Files: `memory.json` (format stamp,
    embedding model, dimension, current snapshot) and `snap-*/{index.faiss, docs.json}`; no pickle.

    Example:
        ```python
        memory = VectorMemory("assistant")
        memory.remember("The user's cat is called Miso.", {"topic": "pets"})
        memory.recall("what pet does the user have?", k=1)[0].page_content
        agent_tools = memory.as_tools()  # `remember` and `recall` for an agent
        ```
    """

    def __init__(
        self, name: str, *, embeddings: Embeddings | None = None, root: str | Path | None = None
    ) -> None:
        from agentkit.memory.store import memory_dir
        from agentkit.names import VECTOR_MEMORY_NAME

        VECTOR_MEMORY_NAME.check(name)

        self.name = name
        self.folder = (Path(root).expanduser() if root else memory_dir() / "vectors") / name
        self._embeddings = embeddings
        self._store: Any = None  # the langchain FAISS store of `_snapshot`
        self._snapshot: str | None = None

    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            from agentkit.models import LocalEmbeddings

            self._embeddings = LocalEmbeddings()
        return self._embeddings

    def _embeddings_id(self) -> str:
        model = getattr(self.embeddings, "model", None)
        return f"{type(self.embeddings).__name__}:{model}" if model else type(self.embeddings).__name__

    # ---- reading ----------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any] | None:
        path = self.folder / MANIFEST
        if not path.is_file():
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or int(manifest.get("version", 0)) > FORMAT_VERSION:
            raise BadInputError(
                f"{path} is not a vector memory this agentkit can read (format {manifest.get('format')!r}, "
                f"version {manifest.get('version')!r}).",
                fix="upgrade agentkit, or use another memory name.",
            )
        if manifest["embeddings"] != self._embeddings_id():
            raise BadInputError(
                f"Vector memory {self.name!r} was built with {manifest['embeddings']}, not {self._embeddings_id()}; "
                "vectors from different models cannot be compared.",
                fix=f"use the same embeddings, or another memory name (or delete {self.folder}).",
            )
        return manifest

    def _load(self) -> Any:
        """The FAISS store of the newest snapshot (None while nothing is remembered)."""
        manifest = self._manifest()
        if manifest is None:
            self._store, self._snapshot = None, None
            return None
        if manifest["snapshot"] == self._snapshot:
            return self._store
        import faiss
        from langchain_core.documents import Document

        snap = self.folder / manifest["snapshot"]
        docs = json.loads((snap / "docs.json").read_text(encoding="utf-8"))
        self._store = _faiss_store(
            self.embeddings,
            faiss.read_index(str(snap / "index.faiss")),
            {d["id"]: Document(id=d["id"], page_content=d["text"], metadata=d["metadata"]) for d in docs},
            {i: d["id"] for i, d in enumerate(docs)},
        )
        self._snapshot = manifest["snapshot"]
        return self._store

    def __len__(self) -> int:
        manifest = self._manifest()
        return int(manifest["count"]) if manifest else 0

    def recall(self, query: str, k: int = 4) -> list[Document]:
        """The `k` remembered texts closest in meaning to `query`, best first; `metadata["score"]`
        is the cosine similarity."""
        if k < 1:
            raise BadInputError(f"recall k must be at least 1, got {k}.", fix="pass k=1 or more.")
        store = self._load()
        if store is None:
            return []
        found = store.similarity_search_with_score(query, k=k)
        return [
            doc.model_copy(update={"metadata": {**doc.metadata, "score": float(score)}})
            for doc, score in found
        ]

    def as_retriever(self, k: int = 4) -> VectorStoreRetriever:
        """A langchain retriever over the newest snapshot (reload it to see later `remember`s)."""
        store = self._load()
        if store is None:
            raise BadInputError(
                f"Vector memory {self.name!r} is empty.", fix="remember(text) something first."
            )
        return store.as_retriever(search_kwargs={"k": k})

    # ---- writing ----------------------------------------------------------------------------
    def remember(self, text: str, metadata: dict[str, MetadataValue] | None = None) -> str:
        """Keep `text` (with optional flat metadata); returns its id. The same text and metadata
        remembered twice are kept once."""
        if not isinstance(text, str) or not text.strip():
            raise BadInputError("remember() needs non-empty text.", fix="pass the fact to keep as a string.")
        metadata = dict(metadata or {})
        try:
            canonical = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False)
        except TypeError:
            raise BadInputError(
                f"Vector memory metadata must be flat JSON values; got {metadata!r}.",
                fix="use str, int, float, bool or None values.",
            ) from None
        doc_id = hashlib.sha256(canonical.encode()).hexdigest()[:24]
        vector = self.embeddings.embed_documents([text])[0]  # the slow part, outside the lock
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / ".lock"), timeout=120):
            store = self._load()
            if store is not None and doc_id in store.index_to_docstore_id.values():
                return doc_id
            if store is None:
                store = self._empty_store(len(vector))
            metadata["remembered_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            try:
                store.add_embeddings([(text, vector)], metadatas=[metadata], ids=[doc_id])
                self._save(store)
            except BaseException:
                self._store, self._snapshot = None, None  # the in-memory store is ahead of the disk
                raise
        return doc_id

    def clear(self) -> None:
        """Forget everything (the folder is removed)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self._store, self._snapshot = None, None

    def _empty_store(self, dimension: int) -> Any:
        import faiss

        return _faiss_store(self.embeddings, faiss.IndexFlatIP(dimension), {}, {})

    def _save(self, store: Any) -> None:
        """Write a new snapshot folder, then point the manifest at it (one atomic rename each), then
        drop snapshots older than the previous one (a reader may still be opening that)."""
        import faiss

        from agentkit.registry.store import write_json_atomic

        snapshot = f"snap-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        staging = self.folder / f".{snapshot}.tmp"
        staging.mkdir()
        faiss.write_index(store.index, str(staging / "index.faiss"))
        docs = []
        for row in range(len(store.index_to_docstore_id)):
            doc = store.docstore.search(store.index_to_docstore_id[row])
            docs.append(
                {"id": store.index_to_docstore_id[row], "text": doc.page_content, "metadata": doc.metadata}
            )
        (staging / "docs.json").write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
        staging.rename(self.folder / snapshot)
        previous = self._snapshot
        write_json_atomic(
            self.folder / MANIFEST,
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "embeddings": self._embeddings_id(),
                "dimension": store.index.d,
                "count": len(docs),
                "snapshot": snapshot,
            },
        )
        self._store, self._snapshot = store, snapshot
        for old in self.folder.glob("snap-*"):
            if old.name not in (snapshot, previous):
                shutil.rmtree(old, ignore_errors=True)

    # ---- tools for agents -------------------------------------------------------------------
    def as_tools(self, k: int = 4) -> list[BaseTool]:
        """`remember(text)` and `recall(query)` as langchain tools over this memory."""
        from langchain_core.tools import StructuredTool

        def remember(text: str) -> str:
            self.remember(text)
            return "Remembered."

        def recall(query: str) -> str:
            docs = self.recall(query, k=k)
            if not docs:
                return "Nothing remembered yet."
            return "\n".join(f"{i}. {doc.page_content}" for i, doc in enumerate(docs, 1))

        return [
            StructuredTool.from_function(
                remember,
                name="remember",
                description="Save a fact to long-term memory for later conversations.",
            ),
            StructuredTool.from_function(
                recall, name="recall", description="Look up facts saved in long-term memory, by meaning."
            ),
        ]

"""`FaissStore`: a LangChain VectorStore doing exact cosine search over an on-disk FAISS index.

SQLite (`store.sqlite`) holds ids, texts, metadata and vectors; `vectors.<gen>.faiss` is the index.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStore

from agentkit.indexes.backends import Filter, VectorBackend, matches_filter

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

DB_FILE = "store.sqlite"

# Why vectors live twice: each add is one SQLite transaction (durable, O(batch)), while the FAISS
# file is rewritten whole (O(N)) and so only on flush(). A crash loses at most the FAISS file,
# which is rebuilt from SQLite on the next open: no embedding is ever computed twice.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    row INTEGER PRIMARY KEY AUTOINCREMENT,  -- the int64 id FAISS knows the vector by
    id TEXT UNIQUE NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL                    -- float32 x dimension, unit length
);
"""


class FaissStore(VectorStore, VectorBackend):
    """A LangChain `VectorStore` over FAISS `IndexIDMap2(IndexFlatIP)` with a SQLite docstore.

    Example:
        ```python
        store = FaissStore.load("/tmp/store", embedding=LocalEmbeddings())
        store.add_texts(["a cat", "a dog"], ids=["c", "d"])
        store.similarity_search("kitten", k=1)  # [Document(id="c", page_content="a cat")]
        ```
    """

    def __init__(self, db: sqlite3.Connection, folder: Path | None, embedding: Embeddings | None) -> None:
        self._db = db
        self._folder = folder
        self._embedding = embedding
        self._lock = threading.RLock()  # the async API runs sync methods in worker threads
        self._index: Any = None
        self._loaded_generation = -1

    # ---- construction (all I/O here) ----------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, embedding: Embeddings | None = None) -> FaissStore:
        """Open (or create) the store in `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(_connect(str(folder / DB_FILE)), folder, embedding)

    @classmethod
    def in_memory(cls, embedding: Embeddings | None = None) -> FaissStore:
        return cls(_connect(":memory:"), None, embedding)

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        folder: str | Path | None = None,
        **kwargs: Any,
    ) -> FaissStore:
        store = cls.load(folder, embedding) if folder is not None else cls.in_memory(embedding)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @property
    def embeddings(self) -> Embeddings | None:
        return self._embedding

    # ---- the FAISS index, kept in step with SQLite ----------------------------------------------
    def _generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def _dimension(self) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key='dimension'").fetchone()
        return int(row[0]) if row else None

    def _ensure_index(self) -> Any:
        """The in-memory FAISS index at SQLite's current generation (another writer may have moved it)."""
        generation = self._generation()
        if self._index is not None and generation == self._loaded_generation:
            return self._index
        import faiss
        import numpy as np

        dimension = self._dimension()
        cached = self._folder / f"vectors.{generation}.faiss" if self._folder else None
        if dimension is None:
            index = None
        elif cached is not None and cached.is_file():
            index = faiss.read_index(str(cached))
        else:  # no file at this generation (killed before flush, or another writer): rebuild, no embedding
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
            rows = self._db.execute("SELECT row, vector FROM docs").fetchall()
            if rows:
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
                    len(rows), dimension
                )
                index.add_with_ids(vectors, np.array([r[0] for r in rows], dtype=np.int64))
        self._index, self._loaded_generation = index, generation
        return index

    @contextmanager
    def _write(self) -> Iterator[list[bool]]:
        """One write transaction that moves the generation by one.

        The body appends True once its in-memory FAISS edits are done. If another writer committed
        since our index was loaded, or the body failed, the index is dropped and rebuilt from
        SQLite on next use, so memory never drifts from disk.
        """
        self._db.execute("BEGIN IMMEDIATE")  # take the write lock before reading the generation
        before = self._generation()
        edited: list[bool] = []
        try:
            yield edited
            self._db.execute(
                "INSERT INTO meta VALUES ('generation', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(before + 1),),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._index = None
            raise
        if not edited or before != self._loaded_generation:
            self._index = None
        self._loaded_generation = before + 1

    # ---- VectorBackend ------------------------------------------------------------------------
    def add_vectors(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        import faiss
        import numpy as np

        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        faiss.normalize_L2(vectors)  # cosine similarity = inner product of unit vectors
        with self._lock, self._write() as edited:
            index = self._ensure_index()
            dimension = self._dimension()
            if dimension is None:
                self._db.execute("INSERT INTO meta VALUES ('dimension', ?)", (str(vectors.shape[1]),))
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
            elif dimension != vectors.shape[1]:
                raise ValueError(f"vectors have dimension {vectors.shape[1]}, this store holds {dimension}")
            replaced = self._rows_of(ids)
            self._db.executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in ids])
            rows = []
            for id_, text, metadata, vector in zip(ids, texts, metadatas, vectors, strict=True):
                cursor = self._db.execute(
                    "INSERT INTO docs (id, text, metadata, vector) VALUES (?, ?, ?, ?)",
                    (id_, text, json.dumps(metadata, ensure_ascii=False), vector.tobytes()),
                )
                rows.append(cursor.lastrowid)
            if replaced:
                index.remove_ids(faiss.IDSelectorBatch(np.array(replaced, dtype=np.int64)))
            index.add_with_ids(vectors, np.array(rows, dtype=np.int64))
            self._index = index
            edited.append(True)

    def delete_ids(self, ids: Sequence[str]) -> None:
        import faiss
        import numpy as np

        with self._lock:
            if not self._rows_of(ids):
                return  # nothing to delete: no transaction, no new generation
        with self._lock, self._write() as edited:
            index = self._ensure_index()
            rows = self._rows_of(ids)
            self._db.executemany("DELETE FROM docs WHERE row = ?", [(r,) for r in rows])
            if rows and index is not None:
                index.remove_ids(faiss.IDSelectorBatch(np.array(rows, dtype=np.int64)))
            edited.append(True)

    def all_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM docs")}

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        with self._lock:
            return {
                id_: np.frombuffer(blob, dtype=np.float32)
                for id_, blob in self._select("SELECT id, vector FROM docs WHERE id IN ({})", ids)
            }

    def search_vectors(
        self, vector: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[tuple[str, float]]:
        with self._lock:
            hits = self._nearest(vector, k, filter)
            ids = self._by_row("SELECT row, id FROM docs WHERE row IN ({})", [r for r, _ in hits])
        return [(ids[r][0], s) for r, s in hits if r in ids]

    def flush(self) -> None:
        """Write the FAISS index for the current generation (temp file + rename), drop older ones."""
        import faiss

        if self._folder is None:
            return
        with self._lock:
            index = self._ensure_index()
            if index is None:
                return
            target = self._folder / f"vectors.{self._loaded_generation}.faiss"
            if not target.is_file():
                tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                faiss.write_index(index, str(tmp))
                os.replace(tmp, target)
            for old in self._folder.glob("vectors.*.faiss"):
                if old != target:
                    old.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- LangChain VectorStore ----------------------------------------------------------------
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        import numpy as np

        texts = list(texts)
        if not texts:
            return []
        ids = [i or str(uuid.uuid4()) for i in ids] if ids else [str(uuid.uuid4()) for _ in texts]
        metadatas = metadatas or [{} for _ in texts]
        if len(ids) != len(texts) or len(metadatas) != len(texts):
            raise ValueError(f"got {len(texts)} texts, {len(ids)} ids and {len(metadatas)} metadatas")
        # The last of repeated ids wins, as if the texts had been added one after another.
        last = {id_: n for n, id_ in enumerate(ids)}
        keep = sorted(last.values())
        vectors = np.asarray(
            self._require_embedding().embed_documents([texts[n] for n in keep]), dtype=np.float32
        )
        self.add_vectors(
            [ids[n] for n in keep], [texts[n] for n in keep], vectors, [metadatas[n] for n in keep]
        )
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None:
            ids = list(self.all_ids())
        self.delete_ids(ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        with self._lock:
            rows = self._select("SELECT id, text, metadata FROM docs WHERE id IN ({})", ids)
        return [Document(id=i, page_content=t, metadata=json.loads(m)) for i, t, m in rows]

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self._search(self._require_embedding().embed_query(query), k, filter)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self._search(embedding, k, filter)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = self._require_embedding().embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter=filter)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        import numpy as np
        from langchain_core.vectorstores.utils import maximal_marginal_relevance

        hits = self._search(embedding, fetch_k, filter)
        if not hits:
            return []
        vectors = self.get_vectors([d.id or "" for d, _ in hits])
        picked = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), [vectors[d.id or ""] for d, _ in hits], lambda_mult, k
        )
        return [hits[i][0] for i in picked]

    def _select_relevance_score_fn(self) -> Any:
        return lambda similarity: (similarity + 1.0) / 2.0  # cosine in [-1, 1] -> [0, 1]

    # ---- helpers ------------------------------------------------------------------------------
    def _require_embedding(self) -> Embeddings:
        if self._embedding is None:
            raise ValueError("this FaissStore was opened without embeddings; pass embedding= to embed text")
        return self._embedding

    def _select(self, sql: str, ids: Sequence[str]) -> list[tuple]:
        out: list[tuple] = []
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            part = ids[start : start + 500]
            out += self._db.execute(sql.format(",".join("?" * len(part))), part).fetchall()
        return out

    def _rows_of(self, ids: Sequence[str]) -> list[int]:
        return [r[0] for r in self._select("SELECT row FROM docs WHERE id IN ({})", ids)]

    def _nearest(self, vector: Any, k: int, filter: Filter | None) -> list[tuple[int, float]]:
        """(row, cosine) of the k nearest rows; a filter becomes a FAISS id selector, so it is applied
        before ranking (k filtered hits, not k hits then filtered)."""
        import faiss
        import numpy as np

        index = self._ensure_index()
        if index is None or index.ntotal == 0 or k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1).copy()
        faiss.normalize_L2(query)
        params = None
        if filter:  # a scan of the metadata column: O(chunks) JSON parses, ~50 ms per 100k chunks
            rows = [
                r
                for r, m in self._db.execute("SELECT row, metadata FROM docs")
                if matches_filter(json.loads(m), filter)
            ]
            if not rows:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.array(rows, dtype=np.int64)))
        scores, found = index.search(query, min(k, index.ntotal), params=params)
        return [(int(r), float(s)) for r, s in zip(found[0], scores[0]) if r >= 0]

    def _search(self, vector: Any, k: int, filter: Filter | None) -> list[tuple[Document, float]]:
        with self._lock:
            hits = self._nearest(vector, k, filter)
            docs = self._by_row(
                "SELECT row, id, text, metadata FROM docs WHERE row IN ({})", [r for r, _ in hits]
            )
        return [
            (Document(id=docs[r][0], page_content=docs[r][1], metadata=json.loads(docs[r][2])), s)
            for r, s in hits
            if r in docs  # a row another writer deleted since this index was loaded
        ]

    def _by_row(self, sql: str, rows: list[int]) -> dict[int, tuple]:
        if not rows:
            return {}
        return {r[0]: r[1:] for r in self._db.execute(sql.format(",".join("?" * len(rows))), rows)}


def _connect(path: str) -> sqlite3.Connection:
    # Autocommit mode: the only transactions are the explicit BEGIN IMMEDIATE ones in _write().
    from agentkit.sqlite_wal import connect_wal

    if path == ":memory:":
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    else:  # WAL: readers (queries) never block the writer (index add)
        db = connect_wal(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
    db.executescript(_SCHEMA)
    return db

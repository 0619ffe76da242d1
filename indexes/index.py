"""`Index`: one named index under `$AGENTKIT_HOME/indexes/<name>/` (spec, manifest, vectors).

Create, open, add, search, remove; `as_retriever()` hands a RAG chain a LangChain retriever.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from agentkit.errors import BadInputError
from agentkit.indexes.backends import VectorBackend, get_backend
from agentkit.indexes.manifest import Manifest
from agentkit.indexes.spec import SPEC_FILE, IndexSpec, SplitterSpec, validate_index_name
from agentkit.registry import Registry
from agentkit.registry.staging import staging_dir
from agentkit.registry.store import write_json_atomic

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore

    from agentkit.indexes.ingest import AddReport, Progress
    from agentkit.indexes.rerank import Reranker
    from agentkit.indexes.retrieval import BM25Index, IndexRetriever

INDEXES_DIR = "indexes"
log = logging.getLogger(__name__)


def indexes_dir(registry: Registry) -> Path:
    return registry.root / INDEXES_DIR


def list_indexes(home: str | Path | None = None) -> list[IndexSpec]:
    """Specs of complete indexes (a folder without spec.json is not an index)."""
    folder = indexes_dir(Registry(home))
    if not folder.is_dir():
        return []
    return [IndexSpec.load(p) for p in sorted(folder.iterdir()) if (p / SPEC_FILE).is_file()]


def _missing(name: str, registry: Registry) -> BadInputError:
    names = [s.name for s in list_indexes(registry.root)]
    return BadInputError(
        f"No index {name!r} in {indexes_dir(registry)}; the indexes are: {', '.join(names) or 'none yet'}.",
        fix=f"create it with `agentkit index add {name} PATH...`, or pick one from `agentkit index list`.",
    )


class IndexExistsError(BadInputError):
    """`create` of a name that is taken; `open_or_create` catches it and adds to that index."""


def _exists(name: str) -> IndexExistsError:
    return IndexExistsError(
        f"Index {name!r} already exists.",
        fix=f"open it with open_index({name!r}), or `agentkit index rm {name}` first.",
    )


@contextmanager
def _index_lock(registry: Registry, name: str, timeout: float = 600) -> Iterator[None]:
    """One writer per index across processes (two `index add` runs would embed the same files twice)."""
    from filelock import FileLock, Timeout

    locks = registry.root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"index-{name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning(
            "index %r is being written by another process; waiting up to %.0f s for it", name, timeout
        )
        lock.acquire(timeout=timeout)
    try:
        yield
    finally:
        lock.release()


class Index:
    """A named index: its spec, manifest, vector backend and embeddings. Construct with
    `Index.create` / `Index.open` (or `open_index`); `__init__` only holds what they opened."""

    def __init__(
        self,
        folder: Path,
        spec: IndexSpec,
        manifest: Manifest,
        backend: VectorBackend,
        embeddings: Embeddings,
        registry: Registry,
    ) -> None:
        self.folder, self.spec, self.manifest, self.backend = folder, spec, manifest, backend
        self.embeddings, self.registry = embeddings, registry
        self._bm25: tuple[int, BM25Index] | None = None
        self._token_length: Callable[[str], int] | None = None
        self._rerankers: dict[str, Reranker | None] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        embeddings: Embeddings | str = "minilm-l6",
        backend: str = "faiss",
        backend_options: dict[str, Any] | None = None,
        splitter: SplitterSpec | dict[str, Any] | None = None,
        home: str | Path | None = None,
    ) -> Index:
        """Create an empty index. Everything is validated (embedding model loaded, options parsed)
        before a folder appears, and the folder appears by one rename, spec.json inside."""
        from agentkit.indexes.embedding import describe_embeddings, token_length

        validate_index_name(name)
        registry = Registry(home)
        target = indexes_dir(registry) / name
        if (target / SPEC_FILE).is_file():  # checked again under the lock; this spares loading a model
            raise _exists(name)
        backend_spec = get_backend(backend)
        options = backend_spec.parse_options(backend_options or {})
        splitter_spec = (
            splitter if isinstance(splitter, SplitterSpec) else SplitterSpec.model_validate(splitter or {})
        )
        live, embedding_spec = describe_embeddings(registry, embeddings)
        spec = IndexSpec(
            name=name,
            backend=backend,
            backend_options=options.model_dump(exclude_none=True),
            embedding=embedding_spec,
            splitter=splitter_spec,
        )
        token_length(registry, spec.embedding, spec.splitter)  # refuses a chunk size the model cannot take
        with _index_lock(registry, name):
            if (target / SPEC_FILE).is_file():
                raise _exists(name)
            with staging_dir(registry.root, f"index-{name}") as staging:
                Manifest.open(staging).close()
                write_json_atomic(staging / SPEC_FILE, spec.model_dump(mode="json"))
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():  # a folder without spec.json: a create that died before its rename
                    shutil.rmtree(target)
                os.rename(staging, target)
            try:  # a backend that cannot open (a Chroma server that is down) takes the new folder with it
                return cls._load(target, spec, registry, live)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise

    @classmethod
    def open(
        cls, name: str, *, embeddings: Embeddings | None = None, home: str | Path | None = None
    ) -> Index:
        """Open an existing index; embeddings that differ from the ones it was built with are refused."""
        from agentkit.indexes.embedding import embeddings_for

        validate_index_name(name)
        registry = Registry(home)
        folder = indexes_dir(registry) / name
        if not (folder / SPEC_FILE).is_file():
            raise _missing(name, registry)
        spec = IndexSpec.load(folder)
        return cls._load(folder, spec, registry, embeddings_for(spec, registry, embeddings))

    @classmethod
    def open_or_create(
        cls,
        name: str,
        *,
        embeddings: Embeddings | str | None = None,
        backend: str | None = None,
        backend_options: dict[str, Any] | None = None,
        splitter: dict[str, Any] | None = None,
        home: str | Path | None = None,
    ) -> Index:
        """What `agentkit index add` does: open NAME, refusing any given setting it was not built
        with (None = not given), or create it with the given settings and the defaults."""
        registry = Registry(home)
        validate_index_name(name)
        if not (indexes_dir(registry) / name / SPEC_FILE).is_file():
            try:
                return cls.create(
                    name,
                    embeddings=embeddings or "minilm-l6",
                    backend=backend or "faiss",
                    backend_options=backend_options,
                    splitter=splitter,
                    home=registry.root,
                )
            except IndexExistsError:
                # Another `index add NAME` created it between our look and the index lock: add to
                # that one, as if it had been there all along (its settings are checked below).
                pass
        spec = IndexSpec.load(indexes_dir(registry) / name)
        requested: dict[str, object] = {"embedding": embeddings if isinstance(embeddings, str) else None}
        requested["backend"] = backend
        for key, value in (splitter or {}).items():
            requested["splitter" if key == "kind" else key] = value
        for key, value in (backend_options or {}).items():
            requested[f"backend_options.{key}"] = value
        problems = spec.mismatches(**requested)
        if problems:
            raise BadInputError(
                f"Index {name!r} exists with other settings ({'; '.join(problems)}); mixing them would "
                "put incomparable chunks or vectors side by side.",
                fix=f"drop those options to use its own, pick a new index name, or `agentkit index rm {name}` first.",
            )
        return cls.open(
            name, embeddings=None if isinstance(embeddings, str) else embeddings, home=registry.root
        )

    @classmethod
    def _load(cls, folder: Path, spec: IndexSpec, registry: Registry, embeddings: Embeddings) -> Index:
        backend_spec = get_backend(spec.backend)
        options = backend_spec.parse_options(dict(spec.backend_options))
        backend = backend_spec.open(folder, options, embeddings, spec.name)
        return cls(folder, spec, Manifest.open(folder), backend, embeddings, registry)

    def close(self) -> None:
        self.manifest.close()
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_lock(self, timeout: float = 600) -> Any:
        return _index_lock(self.registry, self.name, timeout)

    # ---- writing ------------------------------------------------------------------------------
    def add(
        self,
        paths: Sequence[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        prune: bool = False,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> AddReport:
        """Index files and folders incrementally: unchanged files (same sha256) embed nothing,
        changed ones replace their chunks, `prune` drops files deleted under `paths`."""
        from agentkit.indexes.ingest import DEFAULT_BATCH, add_paths

        return add_paths(
            self,
            paths,
            include=include,
            exclude=exclude,
            prune=prune,
            batch_size=batch_size or DEFAULT_BATCH,
            progress=progress,
        )

    @property
    def token_length(self) -> Callable[[str], int] | None:
        if self._token_length is None:
            from agentkit.indexes.embedding import token_length

            self._token_length = token_length(self.registry, self.spec.embedding, self.spec.splitter)
        return self._token_length

    # ---- reading ------------------------------------------------------------------------------
    def search(self, query: str, **options: Any) -> list[Document]:
        """Search once: `index.search("text", mode="bm25", k=3)`; options as in `SearchOptions`."""
        from agentkit.indexes.retrieval import SearchOptions, search

        return search(self, query, SearchOptions.model_validate(options))

    def as_retriever(self, **options: Any) -> IndexRetriever:
        """A LangChain `BaseRetriever` for chains: `as_retriever(mode="hybrid", k=5, filter=..., mmr=True)`."""
        from agentkit.indexes.retrieval import IndexRetriever

        return IndexRetriever(index=self, **options)

    @property
    def vectorstore(self) -> VectorStore:
        """The backend as a plain LangChain VectorStore (FaissStore or ChromaStore)."""
        from langchain_core.vectorstores import VectorStore

        if not isinstance(self.backend, VectorStore):
            raise TypeError(f"backend {self.spec.backend!r} is not a LangChain VectorStore")
        return self.backend

    def bm25(self) -> BM25Index:
        """BM25 over the visible chunks, rebuilt when the manifest has moved on since the last build."""
        from agentkit.indexes.retrieval import BM25Index

        generation = self.manifest.generation()
        if self._bm25 is None or self._bm25[0] != generation:
            self._bm25 = (generation, BM25Index(self.manifest.visible_chunks()))
        return self._bm25[1]

    def reranker(self, choice: str) -> Reranker | None:
        from agentkit.indexes.rerank import load_reranker

        if choice not in self._rerankers:
            self._rerankers[choice] = load_reranker(self.registry, choice)
        return self._rerankers[choice]

    def stats(self) -> dict[str, Any]:
        counts = self.manifest.counts()
        last = self.manifest.get_meta("last_add") or {}
        return {
            **counts,
            "vectors": len(self.backend.all_ids()),
            "last_add": last,
            "interrupted": bool(last) and not last.get("completed", False),
            "disk_bytes": sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file()),
        }


def open_index(name: str, *, embeddings: Embeddings | None = None, home: str | Path | None = None) -> Index:
    """Open the index NAME under $AGENTKIT_HOME (or `home`)."""
    return Index.open(name, embeddings=embeddings, home=home)


def create_index(name: str, **settings: Any) -> Index:
    """Create an empty index; settings as in `Index.create` (embeddings, backend, backend_options, splitter, home)."""
    return Index.create(name, **settings)


def remove_index(name: str, *, home: str | Path | None = None) -> None:
    """Delete an index: data kept outside its folder (a Chroma server collection) first, then the folder,
    renamed out of `indexes/` so it disappears from `list` at once."""
    registry = Registry(home)
    validate_index_name(name)
    folder = indexes_dir(registry) / name
    if not (folder / SPEC_FILE).is_file():
        raise _missing(name, registry)
    # The trash is owned staging, emptied after the lock is released: a `rm` killed while
    # deleting is finished by the next registry write.
    with staging_dir(registry.root, f"trash-index-{name}", create=False) as trash:
        with _index_lock(registry, name):
            spec = IndexSpec.load(folder)
            backend_spec = get_backend(spec.backend)
            # Data a backend keeps outside the folder (a Chroma server's collection) goes first; if the
            # server is down this raises, and the index stays whole rather than half-removed.
            backend = backend_spec.open(
                folder, backend_spec.parse_options(dict(spec.backend_options)), None, name
            )
            backend.drop()
            backend.close()
            os.rename(folder, trash)

"""`Index.add`: walk, hash, skip unchanged, split, embed in batches, commit per batch, prune.

Safe to kill at any point: vectors are written before the manifest shows them, old ones removed after.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkit.errors import BadInputError
from agentkit.indexes.loaders import SkipSource, SourceFile, walk
from agentkit.indexes.manifest import ChunkRow, SourceRow
from agentkit.indexes.splitting import make_splitter, overlap_chars, split_segments
from agentkit.registry.store import sha256_file

if TYPE_CHECKING:
    from agentkit.indexes.index import Index

# 128 chunks per embedding call and commit: large enough that sentence-transformers' length
# sorting keeps padding low, small enough that a killed run loses at most a few seconds of work.
DEFAULT_BATCH = 128


@dataclass
class AddReport:
    index: str
    indexed: int = 0  # sources (re)indexed in this run
    unchanged: int = 0  # same sha256 as recorded: nothing embedded
    removed: int = 0  # sources pruned (deleted files) or emptied
    chunks_added: int = 0
    chunks_removed: int = 0
    embedded: int = 0  # texts sent to the embedding model
    reused: int = 0  # vectors reused from chunks with the same text
    duplicates: int = 0  # the same file reached twice in this run
    repaired: int = 0  # leftovers of an interrupted run swept, or sources queued for re-indexing
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return data

    def summary(self) -> str:
        parts = [
            f"{self.indexed} indexed ({self.chunks_added} chunks: {self.embedded} embedded, {self.reused} reused)",
            f"{self.unchanged} unchanged",
        ]
        if self.removed:
            parts.append(f"{self.removed} removed ({self.chunks_removed} chunks)")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate paths ignored")
        if self.repaired:
            parts.append(f"{self.repaired} leftovers of an interrupted run repaired")
        parts.append(f"{len(self.skipped)} skipped")
        return f"index {self.index!r}: " + ", ".join(parts) + f" in {self.seconds:.1f}s"


@dataclass(frozen=True)
class AddProgress:
    sources_done: int
    sources_total: int
    chunks: int


Progress = Callable[[AddProgress], None]


def add_paths(
    index: Index,
    paths: Sequence[str | Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    prune: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> AddReport:
    started = time.perf_counter()
    if batch_size <= 0:
        raise BadInputError(f"batch_size must be > 0, got {batch_size}.", fix="use --batch-size 128.")
    roots = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise BadInputError(
            f"{', '.join(missing)}: no such file or folder; nothing was indexed.", fix="check the paths."
        )
    report = AddReport(index.name)
    with index.write_lock():
        index.manifest.set_meta("last_add", {"completed": False, "paths": [str(p) for p in roots]})
        report.repaired = repair(index)
        found = walk(roots, include, exclude)
        report.duplicates, report.skipped = found.duplicates, list(found.skipped)
        known = index.manifest.sources()
        todo: list[tuple[SourceFile, str]] = []
        emptied: list[str] = []
        for source in found.files:
            sha = sha256_file(source.path)
            if source.key in known and known[source.key].sha256 == sha:
                report.unchanged += 1
                continue
            try:
                source.format.check(source.path)
            except SkipSource as skip:
                report.skipped.append((str(source.path), skip.line()))
                if skip.empty and source.key in known:
                    emptied.append(source.key)
                continue
            todo.append((source, sha))

        writer = _BatchWriter(index, batch_size, report, progress, len(todo))
        for source, sha in todo:
            try:
                writer.add_source(source, sha)
            except SkipSource as skip:
                writer.abandon(source, sha)
                report.skipped.append((str(source.path), skip.line()))
                if skip.empty and source.key in known:
                    emptied.append(source.key)
        writer.flush()

        if prune:
            emptied += [key for key in known if _under(key, roots) and not Path(key).exists()]
        if emptied:
            ids = index.manifest.remove_sources(emptied)
            index.backend.delete_ids(ids)
            report.removed, report.chunks_removed = len(emptied), report.chunks_removed + len(ids)
        index.backend.flush()
        report.seconds = time.perf_counter() - started
        index.manifest.set_meta("last_add", report.to_dict() | {"completed": True})
    return report


def repair(index: Index) -> int:
    """Make vectors and manifest agree after an interrupted add: sweep rows no version shows,
    delete vectors the manifest does not show, re-queue sources whose vectors went missing."""
    swept = index.manifest.sweep()
    visible = index.manifest.visible_ids()
    stored = index.backend.all_ids()
    orphans = sorted(stored - visible)
    if orphans:
        index.backend.delete_ids(orphans)
    requeued = index.manifest.invalidate(visible - stored) if visible - stored else []
    return len(set(swept) | set(orphans)) + len(requeued)


def _under(key: str, roots: Sequence[Path]) -> bool:
    path = Path(key)
    for root in roots:
        resolved = root.resolve() if root.exists() else root.absolute()
        if path == resolved or resolved in path.parents:
            return True
    return False


class _BatchWriter:
    """Collects chunks across sources; each flush embeds one batch and commits it.

    Order per flush: vectors first (invisible: the manifest does not show them yet), then one
    manifest transaction that stages the chunks and flips finished sources to their new version,
    then the old version's vectors are deleted. A kill between any two steps leaves either the old
    or the new version visible, and `repair` sweeps the rest on the next run.
    """

    def __init__(
        self, index: Index, batch_size: int, report: AddReport, progress: Progress | None, total: int
    ) -> None:
        self.index, self.batch_size, self.report, self.progress = index, batch_size, report, progress
        self.total, self.done = total, 0
        self.pending: list[ChunkRow] = []
        self.finished: list[SourceRow] = []
        self.splitters: dict[str | None, Any] = {}

    def _splitter(self, language: str | None) -> Any:
        if language not in self.splitters:
            self.splitters[language] = make_splitter(
                self.index.spec.splitter, language=language, token_length=self.index.token_length
            )
        return self.splitters[language]

    def add_source(self, source: SourceFile, sha: str) -> None:
        splitter = self._splitter(source.format.language)
        count = 0
        chunks = split_segments(
            source.format.read(source.path),
            splitter,
            source.key,
            sha,
            max_overlap=overlap_chars(self.index.spec.splitter),
        )
        for chunk in chunks:
            meta = chunk.metadata(source.key, sha, source.format.name)
            self.pending.append(
                ChunkRow(chunk.id, source.key, sha, chunk.position, chunk.content_hash, chunk.text, meta)
            )
            count += 1
            if len(self.pending) >= self.batch_size:
                self.flush()
        if count == 0:
            raise SkipSource("no extractable text", empty=True)
        self.finished.append(
            SourceRow(source.key, sha, source.path.stat().st_size, source.format.name, count)
        )

    def abandon(self, source: SourceFile, sha: str) -> None:
        """A source failed half-way: forget its pending chunks and any it already staged."""
        self.pending = [c for c in self.pending if not (c.source == source.key and c.source_sha == sha)]
        staged = self.index.manifest.discard(source.key, sha)
        if staged:
            self.index.backend.delete_ids(staged)

    def flush(self) -> None:
        batch, finished = self.pending, self.finished
        self.pending, self.finished = [], []
        if batch:
            vectors = self._vectors(batch)
            self.index.backend.add_vectors(
                [c.id for c in batch], [c.text for c in batch], vectors, [c.metadata for c in batch]
            )
            self.report.chunks_added += len(batch)
        replaced = self.index.manifest.write_batch(batch, finished)
        new_ids = {c.id for c in batch}
        stale = [i for i in replaced if i not in new_ids]
        if stale:
            self.index.backend.delete_ids(stale)
            self.report.chunks_removed += len(stale)
        self.report.indexed += len(finished)
        self.done += len(finished)
        if self.progress is not None and (batch or finished):
            self.progress(AddProgress(self.done, self.total, self.report.chunks_added))

    def _vectors(self, batch: list[ChunkRow]) -> Any:
        """Embed each distinct text once; reuse vectors of identical chunks already in the index."""
        import numpy as np

        dimension = self.index.spec.embedding.dimension
        known = self.index.manifest.ids_with_hashes(c.content_hash for c in batch)
        stored = self.index.backend.get_vectors(list(known.values())) if known else {}
        by_hash: dict[str, np.ndarray] = {h: stored[i] for h, i in known.items() if i in stored}
        to_embed = list(dict.fromkeys(c.content_hash for c in batch if c.content_hash not in by_hash))
        if to_embed:
            text_of = {c.content_hash: c.text for c in batch}
            fresh = np.asarray(
                self.index.embeddings.embed_documents([text_of[h] for h in to_embed]), dtype=np.float32
            )
            if fresh.shape != (len(to_embed), dimension):
                raise BadInputError(
                    f"The embeddings returned vectors of shape {fresh.shape}, the index holds dimension {dimension}.",
                    fix="use the embeddings the index was built with.",
                )
            by_hash.update(zip(to_embed, fresh))
        self.report.embedded += len(to_embed)
        self.report.reused += len(batch) - len(to_embed)
        return np.stack([by_hash[c.content_hash] for c in batch])

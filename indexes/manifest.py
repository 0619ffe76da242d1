"""The manifest (`manifest.sqlite`): per source its sha256, per chunk its text, metadata and version.

A chunk is visible only while its source row has the same file hash: one transaction swaps versions.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    key TEXT PRIMARY KEY,      -- absolute path
    sha256 TEXT NOT NULL,      -- '' = must be re-indexed (its vectors went missing)
    size INTEGER NOT NULL,
    format TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    source_sha TEXT NOT NULL,  -- the file version this chunk belongs to
    position INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_source ON chunks (source, source_sha);
CREATE INDEX IF NOT EXISTS chunks_by_hash ON chunks (content_hash);
CREATE VIEW IF NOT EXISTS visible AS
    SELECT c.* FROM chunks c JOIN sources s ON s.key = c.source AND s.sha256 = c.source_sha;
"""


@dataclass(frozen=True)
class SourceRow:
    key: str
    sha256: str
    size: int
    format: str
    chunks: int


@dataclass(frozen=True)
class ChunkRow:
    id: str
    source: str
    source_sha: str
    position: int
    content_hash: str
    text: str
    metadata: dict[str, Any]


class Manifest:
    """SQLite in WAL mode: queries read while `index add` writes; each write is one transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._lock = threading.RLock()

    @classmethod
    def open(cls, folder: Path) -> Manifest:
        from agentkit.sqlite_wal import connect_wal

        db = connect_wal(folder / MANIFEST_FILE, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process; fsync at checkpoints
        db.executescript(_SCHEMA)
        return cls(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute(
                    "INSERT INTO meta VALUES ('generation', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _ids(self, sql: str, args: Sequence[Any] = ()) -> list[str]:
        return [r[0] for r in self._db.execute(sql, args)]

    # ---- reading ------------------------------------------------------------------------------
    def generation(self) -> int:
        """Moves on every committed write: caches (BM25) built at one generation are stale at another."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def sources(self) -> dict[str, SourceRow]:
        with self._lock:
            rows = self._db.execute("SELECT key, sha256, size, format, chunks FROM sources").fetchall()
        return {r[0]: SourceRow(*r) for r in rows}

    def visible_ids(self) -> set[str]:
        with self._lock:
            return set(self._ids("SELECT id FROM visible"))

    def visible_chunks(self) -> list[ChunkRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM visible ORDER BY source, position").fetchall()
        return [_chunk(r) for r in rows]

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRow]:
        """Visible chunks among `ids` (a hit from a vector store that the manifest does not show
        is a leftover of an interrupted add, and is dropped)."""
        out: dict[str, ChunkRow] = {}
        ids = list(dict.fromkeys(ids))
        with self._lock:
            for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
                part = ids[start : start + 500]
                rows = self._db.execute(
                    f"SELECT * FROM visible WHERE id IN ({','.join('?' * len(part))})", part
                )
                out.update((r[0], _chunk(r)) for r in rows)
        return out

    def ids_with_hashes(self, hashes: Iterable[str]) -> dict[str, str]:
        """content hash -> a visible chunk id with that text, to reuse its vector instead of embedding."""
        out: dict[str, str] = {}
        hashes = list(dict.fromkeys(hashes))
        with self._lock:
            for start in range(0, len(hashes), 500):
                part = hashes[start : start + 500]
                sql = f"SELECT content_hash, id FROM visible WHERE content_hash IN ({','.join('?' * len(part))})"
                out.update(self._db.execute(sql, part).fetchall())
        return out

    def counts(self) -> dict[str, int]:
        with self._lock:
            sources, stale = self._db.execute("SELECT COUNT(*), SUM(sha256 = '') FROM sources").fetchone()
            chunks = self._db.execute("SELECT COUNT(*) FROM visible").fetchone()[0]
            invisible = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] - chunks
        return {"sources": sources, "chunks": chunks, "needs_reindex": stale or 0, "unswept_rows": invisible}

    def get_meta(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # ---- writing ------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, default=str)),
            )

    def write_batch(self, chunks: Sequence[ChunkRow], finished: Sequence[SourceRow]) -> list[str]:
        """Stage `chunks` and make each finished source's new version visible, in one transaction.
        Returns the ids of the chunks its old versions had, for the caller to delete from vectors."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.id,
                        c.source,
                        c.source_sha,
                        c.position,
                        c.content_hash,
                        c.text,
                        json.dumps(c.metadata, ensure_ascii=False),
                    )
                    for c in chunks
                ],
            )
            replaced: list[str] = []
            for row in finished:
                replaced += self._ids(
                    "SELECT id FROM chunks WHERE source = ? AND source_sha != ?", (row.key, row.sha256)
                )
                db.execute("DELETE FROM chunks WHERE source = ? AND source_sha != ?", (row.key, row.sha256))
                db.execute(
                    "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?)",
                    (row.key, row.sha256, row.size, row.format, row.chunks, now),
                )
        return replaced

    def discard(self, source: str, source_sha: str) -> list[str]:
        """Drop the staged rows of one file version that failed half-way (unless it is the visible one)."""
        with self._write() as db:
            sql = (
                "FROM chunks WHERE source = ? AND source_sha = ? "
                "AND NOT EXISTS (SELECT 1 FROM sources s WHERE s.key = ? AND s.sha256 = ?)"
            )
            args = (source, source_sha, source, source_sha)
            ids = self._ids(f"SELECT id {sql}", args)
            db.execute(f"DELETE {sql}", args)
        return ids

    def remove_sources(self, keys: Sequence[str]) -> list[str]:
        """Forget sources (pruned or emptied files); returns their chunk ids."""
        ids: list[str] = []
        with self._write() as db:
            for key in keys:
                ids += self._ids("SELECT id FROM chunks WHERE source = ?", (key,))
                db.execute("DELETE FROM chunks WHERE source = ?", (key,))
                db.execute("DELETE FROM sources WHERE key = ?", (key,))
        return ids

    def sweep(self) -> list[str]:
        """Delete rows no source version shows (left by a killed add); returns their ids."""
        with self._write() as db:
            sql = "FROM chunks WHERE id NOT IN (SELECT id FROM visible)"
            ids = self._ids(f"SELECT id {sql}")
            if ids:
                db.execute(f"DELETE {sql}")
        return ids

    def invalidate(self, chunk_ids: Iterable[str]) -> list[str]:
        """Mark the sources of chunks whose vectors are missing for re-indexing; returns their keys."""
        chunk_ids = list(chunk_ids)
        keys: set[str] = set()
        with self._write() as db:
            for start in range(0, len(chunk_ids), 500):
                part = chunk_ids[start : start + 500]
                keys.update(
                    self._ids(f"SELECT source FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)
                )
            db.executemany("UPDATE sources SET sha256 = '' WHERE key = ?", [(k,) for k in keys])
        return sorted(keys)


def _chunk(row: tuple) -> ChunkRow:
    return ChunkRow(*row[:6], metadata=json.loads(row[6]))

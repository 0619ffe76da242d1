"""`JobsDB`: the server's SQLite file ($AGENTKIT_HOME/server/jobs.sqlite) with the uploaded files, the
fine-tuning jobs and their events, so all three outlive a restart; rows come out as OpenAI's objects."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentkit.errors import AgentkitError
from agentkit.sqlite_wal import BUSY_TIMEOUT_S, to_wal

SCHEMA_VERSION = 2  # 2: jobs.trained_tokens
# A job is in one of these; the last three are final.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINAL = (SUCCEEDED, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,
    purpose TEXT NOT NULL, format TEXT NOT NULL, rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, status TEXT NOT NULL, model TEXT NOT NULL,
    training_file TEXT NOT NULL, validation_file TEXT, suffix TEXT, seed INTEGER NOT NULL,
    method TEXT NOT NULL,           -- JSON: {"type": "supervised", "supervised": {"hyperparameters": {...}}}
    output TEXT NOT NULL,           -- the registry id the job registers: fine_tuned_model once it succeeded
    folder TEXT NOT NULL,           -- tune.yaml, its data, the events file and the worker's log
    metadata TEXT, fine_tuned_model TEXT, error TEXT, started_at INTEGER, finished_at INTEGER,
    worker_pid INTEGER, worker_token TEXT, events_offset INTEGER NOT NULL DEFAULT 0,
    trained_tokens INTEGER);       -- tokens the trainer read (all epochs, padding excluded), once it succeeded
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, type TEXT NOT NULL, data TEXT);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq);
"""


def new_id(prefix: str) -> str:
    """`file-…`, `ftjob-…`, `ftevent-…`: OpenAI's prefixes, 24 hex digits (96 random bits)."""
    return f"{prefix}-{secrets.token_hex(12)}"


class JobsDB:
    """One connection shared by the request threads and the job runner, serialised by a lock: the
    statements are a few milliseconds, and one writer at a time is what SQLite allows anyway."""

    def __init__(self, path: Path) -> None:
        to_wal(path)  # WAL: a second server on the same home reads while this one writes
        self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AgentkitError(
                    f"{path} was written by a newer agentkit (schema {version}, this one reads {SCHEMA_VERSION}).",
                    fix="upgrade agentkit, or serve from another AGENTKIT_HOME.",
                )
            # IF NOT EXISTS throughout: idempotent, so two servers opening one new file both succeed.
            self._conn.executescript(f"{_SCHEMA}")
            with self._tx() as db:  # schema 1 -> 2, once, under the write lock (two servers may open it)
                columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
                if "trained_tokens" not in columns:
                    db.execute("ALTER TABLE jobs ADD COLUMN trained_tokens INTEGER")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn.in_transaction:  # nested: the outer block commits
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---- files -------------------------------------------------------------------------------------
    def add_file(self, **row: Any) -> dict[str, Any]:
        with self._tx() as db:
            db.execute("INSERT INTO files (id, filename, bytes, created_at, purpose, format, rows) "
                       "VALUES (:id, :filename, :bytes, :created_at, :purpose, :format, :rows)", row)  # fmt: skip
        return row

    def file(self, file_id: str) -> dict[str, Any] | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return dict(row) if row else None

    def files(self, *, purpose: str | None, after: str | None, limit: int,
              newest_first: bool) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
        where, args = ["1 = 1"], []
        if purpose is not None:
            where.append("purpose = ?")
            args.append(purpose)
        if after is not None:
            where.append(f"rowid {'<' if newest_first else '>'} (SELECT rowid FROM files WHERE id = ?)")
            args.append(after)
        order = "DESC" if newest_first else "ASC"
        return self._page(f"SELECT * FROM files WHERE {' AND '.join(where)} ORDER BY rowid {order}", args, limit)

    def delete_file(self, file_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount == 1

    # ---- jobs --------------------------------------------------------------------------------------
    def add_job(self, row: dict[str, Any], messages: list[str]) -> dict[str, Any]:
        """Insert a queued job; returns its row as inserted, read in the same transaction, before
        the runner (which polls on its own too) can move it on."""
        with self._tx() as db:
            names = ", ".join(row)
            db.execute(f"INSERT INTO jobs ({names}) VALUES ({', '.join(':' + k for k in row)})", row)
            for message in messages:
                self.add_event(row["id"], message)
            return dict(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(row) if row else None

    def jobs(self, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        if after is None:
            return self._page("SELECT * FROM jobs ORDER BY rowid DESC", [], limit)
        return self._page("SELECT * FROM jobs WHERE rowid < (SELECT rowid FROM jobs WHERE id = ?) ORDER BY rowid DESC",
                          [after], limit)  # fmt: skip

    def jobs_in(self, status: str) -> list[dict[str, Any]]:
        with self._tx() as db:
            return [dict(r) for r in db.execute("SELECT * FROM jobs WHERE status = ? ORDER BY rowid", (status,))]

    def claim_next(self) -> dict[str, Any] | None:
        """The oldest queued job, now `running`; None when none waits."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE status = ? ORDER BY rowid LIMIT 1", (QUEUED,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = ?, started_at = ? WHERE id = ?", (RUNNING, int(time.time()), row["id"]))
            self.add_event(row["id"], "Fine-tuning job started.")
        return dict(row) | {"status": RUNNING}

    def set_worker(self, job_id: str, pid: int, token: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET worker_pid = ?, worker_token = ? WHERE id = ?", (pid, token, job_id))

    def finish(self, job_id: str, status: str, *, messages: list[tuple[str, str]], from_status: tuple[str, ...],
               fine_tuned_model: str | None = None, error: dict[str, Any] | None = None,
               trained_tokens: int | None = None) -> bool:  # fmt: skip
        """Move a job from one of `from_status` to the final `status`, with its closing events
        ((level, message) pairs); False (and nothing written) if it was in another status."""
        with self._tx() as db:
            marks = ", ".join("?" * len(from_status))
            done = db.execute(
                f"UPDATE jobs SET status = ?, fine_tuned_model = ?, error = ?, finished_at = ?, trained_tokens = ? "
                f"WHERE id = ? AND status IN ({marks})",
                (status, fine_tuned_model, json.dumps(error) if error else None, int(time.time()), trained_tokens,
                 job_id, *from_status),
            ).rowcount == 1  # fmt: skip
            if done:
                for level, message in messages:
                    self.add_event(job_id, message, level=level)
        return done

    # ---- events ------------------------------------------------------------------------------------
    def add_event(self, job_id: str, message: str, *, level: str = "info", type: str = "message",
                  data: dict[str, Any] | None = None) -> None:  # fmt: skip
        with self._tx() as db:
            db.execute("INSERT INTO events (id, job_id, created_at, level, message, type, data) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (new_id("ftevent"), job_id, int(time.time()), level, message, type,
                        json.dumps(data) if data is not None else None))  # fmt: skip

    def add_worker_events(self, job_id: str, events: list[dict[str, Any]], offset: int) -> None:
        """Events read from the worker's file up to byte `offset`, stored with the offset in one
        transaction, so a restarted server that adopts the worker reads on from there, once."""
        with self._tx() as db:
            for event in events:
                self.add_event(job_id, **event)
            db.execute("UPDATE jobs SET events_offset = ? WHERE id = ?", (offset, job_id))

    def events(self, job_id: str, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, as OpenAI lists them; `after` is the last id of the previous page."""
        if after is None:
            return self._page("SELECT * FROM events WHERE job_id = ? ORDER BY seq DESC", [job_id], limit)
        return self._page("SELECT * FROM events WHERE job_id = ? AND seq < (SELECT seq FROM events WHERE id = ?) "
                          "ORDER BY seq DESC", [job_id, after], limit)  # fmt: skip

    def _page(self, sql: str, args: list[Any], limit: int) -> tuple[list[dict[str, Any]], bool]:
        with self._tx() as db:
            rows = [dict(r) for r in db.execute(f"{sql} LIMIT ?", [*args, limit + 1])]
        return rows[:limit], len(rows) > limit


# ---- rows -> OpenAI's objects ----------------------------------------------------------------------
def file_object(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"],
            "filename": row["filename"], "purpose": row["purpose"], "status": "processed",
            "status_details": None, "expires_at": None}  # fmt: skip


def job_object(row: dict[str, Any]) -> dict[str, Any]:
    method = json.loads(row["method"])
    hyper = method[method["type"]]["hyperparameters"]
    return {
        "id": row["id"], "object": "fine_tuning.job", "created_at": row["created_at"],
        "error": json.loads(row["error"]) if row["error"] else None,
        "fine_tuned_model": row["fine_tuned_model"], "finished_at": row["finished_at"],
        # The legacy top-level field: the three hyperparameters every method has.
        "hyperparameters": {k: hyper[k] for k in ("n_epochs", "batch_size", "learning_rate_multiplier")},
        "model": row["model"], "organization_id": "org-local", "result_files": [], "seed": row["seed"],
        "status": row["status"], "trained_tokens": row["trained_tokens"], "training_file": row["training_file"],
        "validation_file": row["validation_file"], "estimated_finish": None, "integrations": [],
        "metadata": json.loads(row["metadata"]) if row["metadata"] else None, "method": method,
        "user_provided_suffix": row["suffix"],
    }  # fmt: skip


def event_object(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "object": "fine_tuning.job.event", "created_at": row["created_at"],
            "level": row["level"], "message": row["message"], "type": row["type"],
            "data": json.loads(row["data"]) if row["data"] else {}}  # fmt: skip


def page(objects: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    first, last = (objects[0]["id"], objects[-1]["id"]) if objects else (None, None)
    return {"object": "list", "data": objects, "has_more": has_more, "first_id": first, "last_id": last}

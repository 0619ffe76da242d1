"""Conversation memory on disk: one SQLite file (`$AGENTKIT_HOME/memory/sessions.sqlite`) holding every
session's messages and running summary; safe for several processes (WAL, one transaction per write)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message

from agentkit.errors import BadInputError
from agentkit.sqlite_wal import BUSY_TIMEOUT_S, connect_wal

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite import SqliteSaver

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- global order; a session's messages sort by id
    session TEXT NOT NULL,
    message TEXT NOT NULL,                 -- JSON of langchain_core.messages.message_to_dict
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (session, id);
CREATE TABLE IF NOT EXISTS summaries (
    session TEXT PRIMARY KEY,
    summary TEXT NOT NULL,
    through_id INTEGER NOT NULL,           -- messages with id <= through_id are folded into it
    updated REAL NOT NULL
);
"""


def memory_dir() -> Path:
    from agentkit.registry import default_home

    return default_home() / "memory"


def validate_session(session: str) -> str:
    if not isinstance(session, str) or not session.strip() or len(session) > 200:
        raise BadInputError(
            f"Invalid session name {session!r}.",
            fix="use 1-200 characters, e.g. --session work or session='work'.",
        )
    return session


class ConversationStore:
    """Every session's messages and summary in one SQLite file. Construction does no I/O."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else memory_dir() / "sessions.sqlite"
        self._ready = False

    def _prepare(self) -> None:
        with closing(connect_wal(self.path, isolation_level=None)) as conn:
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise BadInputError(
                    f"{self.path} was written by a newer agentkit (memory schema {row[0]} > {SCHEMA_VERSION}).",
                    fix="upgrade agentkit, or point the store at another file.",
                )
        self._ready = True

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready or not self.path.exists():
            self._prepare()
        # isolation_level=None: no implicit transactions; writes below open BEGIN IMMEDIATE, which
        # takes the write lock up front, so two processes appending never interleave a turn.
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ---- messages ---------------------------------------------------------------------------
    def append(self, session: str, messages: Sequence[BaseMessage]) -> list[int]:
        """Add messages to the end of a session, in one transaction; returns their ids."""
        from langchain_core.messages import message_to_dict

        validate_session(session)
        rows = []
        for message in messages:
            if isinstance(message, BaseMessageChunk):  # a streamed reply, aggregated
                message = message_chunk_to_message(message)
            rows.append(json.dumps(message_to_dict(message), ensure_ascii=False))
        now = time.time()
        with self._write() as conn:
            return [
                conn.execute(
                    "INSERT INTO messages (session, message, created) VALUES (?, ?, ?)", (session, row, now)
                ).lastrowid
                for row in rows
            ]

    def rows(self, session: str, after_id: int = 0) -> list[tuple[int, BaseMessage]]:
        """(id, message) pairs of a session, oldest first, those with id > after_id."""
        from langchain_core.messages import messages_from_dict

        validate_session(session)
        with self._connect() as conn:
            found = conn.execute(
                "SELECT id, message FROM messages WHERE session = ? AND id > ? ORDER BY id",
                (session, after_id),
            ).fetchall()
        messages = messages_from_dict([json.loads(text) for _, text in found])
        return [(row_id, message) for (row_id, _), message in zip(found, messages, strict=True)]

    def messages(self, session: str) -> list[BaseMessage]:
        return [message for _, message in self.rows(session)]

    def sessions(self) -> list[str]:
        if not self.path.exists():
            return []
        with self._connect() as conn:
            return [row[0] for row in conn.execute("SELECT DISTINCT session FROM messages ORDER BY session")]

    def clear(self, session: str) -> None:
        validate_session(session)
        with self._write() as conn:
            conn.execute("DELETE FROM messages WHERE session = ?", (session,))
            conn.execute("DELETE FROM summaries WHERE session = ?", (session,))

    # ---- the running summary ----------------------------------------------------------------
    def summary(self, session: str) -> tuple[str, int]:
        """(summary, through_id); ("", 0) when nothing is summarised yet."""
        validate_session(session)
        with self._connect() as conn:
            row = conn.execute(
                "SELECT summary, through_id FROM summaries WHERE session = ?", (session,)
            ).fetchone()
        return (row[0], int(row[1])) if row else ("", 0)

    def set_summary(self, session: str, summary: str, through_id: int) -> None:
        """Store a summary of the messages up to `through_id`. It only moves forward: when two
        processes summarise at once, the one that covers more turns wins."""
        validate_session(session)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO summaries (session, summary, through_id, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (session) DO UPDATE SET summary = excluded.summary, "
                "through_id = excluded.through_id, updated = excluded.updated "
                "WHERE excluded.through_id >= summaries.through_id",
                (session, summary, through_id, time.time()),
            )

    def history(self, session: str) -> SessionHistory:
        return SessionHistory(self, session)


class SessionHistory(BaseChatMessageHistory):
    """One session as a langchain `BaseChatMessageHistory` (every stored message, no strategy)."""

    def __init__(self, store: ConversationStore, session: str) -> None:
        self.store = store
        self.session = validate_session(session)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return self.store.messages(self.session)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self.store.append(self.session, messages)

    def clear(self) -> None:
        self.store.clear(self.session)


def sqlite_checkpointer(path: str | Path | None = None) -> SqliteSaver:
    """A LangGraph `SqliteSaver` at `$AGENTKIT_HOME/memory/checkpoints.sqlite`, for agents built as
    graphs (`create_agent(..., checkpointer=sqlite_checkpointer())`, thread_id = session).

    The caller owns the connection: `saver.conn.close()` when done.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    target = Path(path).expanduser() if path else memory_dir() / "checkpoints.sqlite"
    # check_same_thread=False: LangGraph runs nodes on worker threads; SqliteSaver serialises
    # access with its own lock. Its setup asks for WAL again: a no-op on a file already in WAL.
    return SqliteSaver(connect_wal(target, check_same_thread=False))

"""SQLite files that several processes share: switched to WAL once, under a file lock.

WAL lets readers and one writer work at once, and it persists in the file. Switching a file to it
takes an exclusive lock that SQLite does not retry through the busy timeout, so two processes that
open one new file at the same moment made one of them fail with "database is locked". `to_wal`
serialises the switch with a `<file>.lock` beside it; a file already in WAL is left as it is.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

# A writer waits this long for another process's transaction before giving up (sqlite busy timeout).
BUSY_TIMEOUT_S = 30.0


def to_wal(path: str | Path) -> None:
    """Create `path` if needed and put it in WAL mode."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        FileLock(f"{path}.lock", timeout=BUSY_TIMEOUT_S),
        closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as conn,
    ):
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")


def connect_wal(path: str | Path, **options: Any) -> sqlite3.Connection:
    """`sqlite3.connect` to a file in WAL mode, with the shared busy timeout."""
    to_wal(path)
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, **options)

"""SQLite files shared by processes (memory store, LangGraph checkpointer, index manifest, FAISS
docstore): opening one new file from two processes at the same instant must work for both."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_open_new_files_at_the_same_moment(tmp_path: Path) -> None:
    # Switching a new file to WAL is not retried by SQLite's busy timeout: before agentkit.sqlite_wal,
    # opening one fresh store from two processes at once failed with "database is locked" about a
    # third of the time. Each process opens 12 fresh files of each kind, both starting each at the
    # same instant.
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from langchain_core.messages import HumanMessage
        from agentkit.memory import ConversationStore, sqlite_checkpointer
        from agentkit.indexes.backends.faiss.store import FaissStore
        from agentkit.indexes.manifest import Manifest

        def checkpointer(path):
            saver = sqlite_checkpointer(path)
            saver.setup()
            saver.conn.close()

        def manifest(path):
            path.mkdir(exist_ok=True)
            Manifest.open(path).close()

        openers = [
            lambda path: ConversationStore(path).append("s", [HumanMessage(sys.argv[1])]),
            checkpointer,
            manifest,
            lambda path: FaissStore.load(path).close(),
        ]
        root, start = Path({str(tmp_path)!r}), float(sys.argv[2])
        for slot in range(48):  # each opener on 12 fresh files, one file per 0.1 s slot
            time.sleep(max(0.0, start + 0.1 * slot - time.time()))
            openers[slot % 4](root / f"{{slot % 4}}-{{slot // 4}}")
    """)
    start = f"{time.time() + 4.0:.3f}"  # both processes have imported by then
    procs = [subprocess.Popen([sys.executable, "-c", code, tag, start], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for tag in ("p1", "p2")]  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    from agentkit.memory import ConversationStore

    for i in range(12):
        assert sorted(m.content for m in ConversationStore(tmp_path / f"0-{i}").messages("s")) == [
            "p1",
            "p2",
        ]

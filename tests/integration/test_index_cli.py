"""`agentkit index` as a user runs it: real subprocesses, the real minilm-l6, a registry in tmp.

Includes the kill test: `index add` is SIGKILLed half-way; re-running finishes with every chunk once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agentkit.indexes import open_index
from agentkit.indexes.loaders import read_text
from agentkit.indexes.spec import SplitterSpec
from agentkit.indexes.splitting import make_splitter, overlap_chars, split_segments
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.registry.store import sha256_file
from tests.unit.test_index_loaders import make_pdf, write_corpus

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    """A fresh registry holding minilm-l6 and a copy of it under another id."""
    root = tmp_path_factory.mktemp("index-cli") / "home"
    for entry in ("minilm-l6", "minilm-copy"):
        Registry(root).create_entry(entry, lambda stage: copy_hf_folder(registry.path("minilm-l6"), stage, link=True))
    return root


def cli(home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENTKIT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "agentkit", "index", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_add_requery_list_show_rm(home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    make_pdf(corpus / "locked.pdf", ["secret"], password="pw")
    (corpus / "latin1.txt").write_bytes("crème brûlée".encode("latin-1"))

    first = cli(home, "add", "docs", str(corpus), "--chunk-size", "200", "--chunk-overlap", "20")
    assert first.returncode == 0, first.stderr
    assert "6 indexed" in first.stdout and "2 skipped" in first.stdout
    assert "locked.pdf: encrypted PDF" in first.stdout and "latin1.txt: not UTF-8" in first.stdout
    assert re.search(r"\[docs\] 6/6 files, \d+ chunks committed", first.stderr)

    again = cli(home, "add", "docs", str(corpus), "--json")
    report = json.loads(again.stdout)
    assert again.returncode == 0 and (report["indexed"], report["unchanged"], report["embedded"]) == (0, 6, 0)

    hits = json.loads(cli(home, "query", "docs", "What do rabbits eat?", "-k", "3", "--json").stdout)
    assert len(hits) == 3 and {"source", "chunk_id", "score", "text"} <= set(hits[0])
    assert hits[0]["text"] == "Rabbits eat carrots." and hits[0]["page"] == 2
    bm25 = cli(home, "query", "docs", "mailman", "--mode", "bm25", "-k", "1", "--filter", "format=markdown")
    assert bm25.returncode == 0 and "dogs.md#0" in bm25.stdout and "mailman" in bm25.stdout

    listed = json.loads(cli(home, "list", "--json").stdout)
    assert [(r["name"], r["backend"], r["embedding"], r["sources"]) for r in listed] == [
        ("docs", "faiss", "minilm-l6", 6)
    ]
    shown = json.loads(cli(home, "show", "docs", "--json").stdout)
    assert shown["chunks"] == shown["vectors"] > 6 and not shown["interrupted"]
    assert shown["spec"]["embedding"] == {
        "model": "minilm-l6",
        "dimension": 384,
        "fingerprint": shown["spec"]["embedding"]["fingerprint"],
    }

    refused = cli(home, "add", "docs", str(corpus), "--embedding", "minilm-copy")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1
    assert "embedding: built with 'minilm-l6', asked for 'minilm-copy'" in lines[0] and "Fix:" in lines[0]

    assert cli(home, "rm", "docs").returncode == 0
    assert json.loads(cli(home, "list", "--json").stdout) == []


def test_missing_index_and_missing_paths_are_one_line_exit_2(home: Path, tmp_path: Path) -> None:
    query = cli(home, "query", "nowhere", "anything")
    assert query.returncode == 2 and query.stderr.count("\n") == 1 and "No index 'nowhere'" in query.stderr
    add = cli(home, "add", "fresh", str(tmp_path / "absent"))
    assert add.returncode == 2 and "no such file or folder" in add.stderr
    assert not (home / "indexes" / "fresh").exists()  # nothing half-created
    bad_filter = cli(home, "query", "nowhere", "x", "--filter", "novalue")
    assert bad_filter.returncode == 2 and "is not key=value" in bad_filter.stderr


def expected_chunk_ids(files: list[Path], spec: SplitterSpec) -> set[str]:
    splitter = make_splitter(spec)
    ids = set()
    for path in files:
        resolved = path.resolve()
        chunks = split_segments(
            read_text(resolved),
            splitter,
            resolved.as_posix(),
            sha256_file(resolved),
            max_overlap=overlap_chars(spec),
        )
        ids |= {c.id for c in chunks}
    return ids


def test_killed_add_reruns_to_every_chunk_exactly_once(home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "many"
    corpus.mkdir()
    files = []
    for n in range(24):
        sentences = [
            f"Document {n}, sentence {i}: the {['red', 'green', 'blue'][i % 3]} fox number {n * 7 + i}."
            for i in range(16)
        ]
        files.append(corpus / f"doc{n:02d}.txt")
        files[-1].write_text(" ".join(sentences))
    args = ["add", "killme", str(corpus), "--chunk-size", "300", "--chunk-overlap", "30", "--batch-size", "8"]
    env = {**os.environ, "AGENTKIT_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentkit", "index", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    done = None
    try:
        for line in proc.stderr:  # one line per committed batch
            match = re.search(r"\[killme\] (\d+)/(\d+) files", line)
            if match and 0 < int(match[1]) < int(match[2]):
                done = int(match[1])
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert done is not None, "the add finished before it could be killed"
    shown = json.loads(cli(home, "show", "killme", "--json").stdout)
    assert shown["interrupted"] and done <= shown["sources"] < 24

    rerun = cli(home, "add", *args[1:], "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["unchanged"] == shown["sources"] and report["indexed"] == 24 - shown["sources"]

    expected = expected_chunk_ids(files, SplitterSpec(chunk_size=300, chunk_overlap=30))
    with open_index("killme", home=home) as index:
        assert index.manifest.visible_ids() == expected  # none missing, none extra
        assert index.backend.all_ids() == expected
        assert not index.stats()["interrupted"] and index.stats()["unswept_rows"] == 0
        probe = next(iter(index.backend.get_vectors([next(iter(expected))]).values()))
        found = [i for i, _ in index.backend.search_vectors(np.asarray(probe), 10_000)]
        assert len(found) == len(set(found)) == len(expected)  # the FAISS index itself holds each chunk once

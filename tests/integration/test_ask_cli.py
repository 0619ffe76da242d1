"""`agentkit index add` + `agentkit ask` over a folder of documents, as a user runs them: real
subprocesses, a real index, the built-in models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    root = tmp_path_factory.mktemp("ask")
    home = Registry(root / "home")
    for base in ("minilm-l6", "smollm2-135m-instruct"):
        home.create_entry(base, lambda s, b=base: copy_hf_folder(registry.path(b), s, link=True))
    docs = root / "docs"
    (docs / "notes").mkdir(parents=True)
    (docs / "paris.md").write_text("# Paris\n\nThe Eiffel Tower is 330 metres tall and was finished in 1889.\n")
    (docs / "notes" / "japan.txt").write_text("Mount Fuji is the highest mountain in Japan, 3,776 metres high.\n")
    return root


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENTKIT_HOME": str(root / "home")}
    return subprocess.run([sys.executable, "-m", "agentkit", *args], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip


def test_index_add_then_ask_streams_a_cited_answer_and_lists_sources(home: Path) -> None:
    added = cli(home, "index", "add", "docs", str(home / "docs"))
    assert added.returncode == 0, added.stderr[-2000:]
    out = cli(home, "ask", "docs", "How tall is the Eiffel Tower?")
    assert out.returncode == 0, out.stderr[-2000:]
    answer, _, sources = out.stdout.partition("Sources:")
    assert "330" in answer and "[paris.md#0]" in answer
    assert "* [paris.md#0]" in sources and str(home / "docs" / "paris.md") in sources


def test_ask_json_and_i_dont_know(home: Path) -> None:
    if cli(home, "index", "show", "docs").returncode != 0:
        assert cli(home, "index", "add", "docs", str(home / "docs")).returncode == 0
    out = cli(home, "ask", "docs", "Who won the 1998 football World Cup?", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["answer"] == "I don't know." and result["found"] is False and result["citations"] == []


def test_ask_missing_index_is_one_line_exit_2(home: Path) -> None:
    out = cli(home, "ask", "no-such-index", "anything")
    assert out.returncode == 2 and "no-such-index" in out.stderr and out.stderr.count("\n") == 1

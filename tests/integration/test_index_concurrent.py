"""Two `agentkit index add` processes racing into one new index: both succeed and the index holds both
files; a racer asking for other settings gets "exists with other settings". Real subprocesses, the
real minilm-l6, a fresh registry in tmp, released together from a barrier file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agentkit.indexes import open_index
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder

pytestmark = pytest.mark.integration

# Waits for the barrier, then runs the CLI in-process: both racers are already past interpreter
# start-up, so they reach the "does NAME exist?" check within milliseconds of each other, and each
# then spends ~1 s loading the model before taking the index lock: the window the bug needed.
RACER = textwrap.dedent(
    """
    import os, sys, time
    barrier = sys.argv[1]
    while not os.path.exists(barrier):
        time.sleep(0.005)
    from agentkit.cli.app import main
    sys.exit(main(["index", "add", *sys.argv[2:]]))
    """
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh registry holding only minilm-l6 (copied from the session home)."""
    root = tmp_path_factory.mktemp("index-race") / "home"
    source = Registry.default().path("minilm-l6")
    Registry(root).create_entry("minilm-l6", lambda stage: copy_hf_folder(source, stage, link=True))
    return root


def race(home: Path, tmp_path: Path, *arg_lists: list[str]) -> list[subprocess.CompletedProcess[str]]:
    barrier = tmp_path / "go"
    env = {**os.environ, "AGENTKIT_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in arg_lists
    ]
    time.sleep(1.0)  # let both interpreters start and spin on the barrier
    barrier.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


@pytest.mark.parametrize("attempt", range(3))
def test_two_adds_into_a_new_index_both_land(home: Path, tmp_path: Path, attempt: int) -> None:
    name = f"race{attempt}"
    files = []
    for animal in ("cats", "dogs"):
        files.append(tmp_path / f"{animal}.txt")
        files[-1].write_text(f"All about {animal}: they sleep a lot in run {attempt}.", encoding="utf-8")
    results = race(home, tmp_path, *[[name, str(f), "--no-progress"] for f in files])
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "1 indexed" in result.stdout, result.stdout
    with open_index(name, home=home) as index:
        sources = {Path(key).name for key in index.manifest.sources()}
        stats = index.stats()
    assert sources == {"cats.txt", "dogs.txt"}
    assert stats["chunks"] == stats["vectors"] == 2
    assert sorted(os.listdir(home / "tmp")) == []  # no staging left behind by either


def test_racer_with_other_settings_is_told_so(home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("Some text about owls.", encoding="utf-8")
    results = race(
        home, tmp_path, ["mixed", str(doc), "--chunk-size", "300"], ["mixed", str(doc), "--chunk-size", "400"]
    )
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode == 2)
    # Before it: at most the "being written by another process; waiting" notice.
    errors = [line for line in loser.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "exists with other settings" in errors[0] and "Fix:" in errors[0], loser.stderr
    assert "chunk_size: built with" in errors[0]

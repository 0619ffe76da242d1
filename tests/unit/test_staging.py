"""Staging folders under `$AGENTKIT_HOME/tmp` and their owners: a writer SIGKILLed mid-write leaves a
folder that the next registry write (or `agentkit models gc`) removes; a live writer's folder stays.

Real child processes, real SIGKILL, real files; the "weights" are 2 MB of bytes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from agentkit.registry import Registry
from agentkit.registry.staging import OWNER_SUFFIX, clean_stale, staging_dir
from tests.unit.test_registry import write_tiny

# A writer that stages 2 MB through the real `Registry.create_entry` (what `models import` and the
# built-in conversion use), prints its staging folder, then blocks until told to go on.
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agentkit.registry import Registry

    def write(stage):
        (stage / "model.safetensors").write_bytes(b"x" * 2_000_000)
        print(stage, flush=True)
        sys.stdin.readline()  # the parent SIGKILLs us here, or lets us fail cleanly
        raise SystemExit(3)

    Registry(Path(sys.argv[1])).create_entry("big", write)
    """
)


def start_writer(home: Path) -> tuple[subprocess.Popen[str], Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line, child.stderr.read() if child.stderr else "writer printed nothing"
    stage = Path(line)
    assert (stage / "model.safetensors").is_file()
    return child, stage


def kill_writer(home: Path) -> tuple[int, Path]:
    child, stage = start_writer(home)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert stage.is_dir()  # what the issue saw: the dead writer's folder stays behind
    return child.pid, stage


def test_killed_writers_staging_is_removed_by_the_next_registry_write(tmp_path: Path) -> None:
    _, stage = kill_writer(tmp_path)
    Registry(tmp_path).create_entry("tiny", write_tiny)
    assert not stage.exists()
    assert sorted(os.listdir(tmp_path / "tmp")) == []  # the owner record went with it
    assert Registry(tmp_path).ids() == ["tiny"]


def test_live_writers_staging_is_kept(tmp_path: Path) -> None:
    child, stage = start_writer(tmp_path)
    try:
        assert clean_stale(tmp_path) == []
        Registry(tmp_path).create_entry("tiny", write_tiny)  # a write beside it leaves it alone too
        assert (stage / "model.safetensors").is_file()
    finally:
        assert child.stdin is not None
        child.stdin.write("go on\n")
        child.stdin.flush()
        child.wait(timeout=30)
    assert child.returncode == 3
    assert not stage.exists()  # the owner cleaned up after itself
    assert sorted(os.listdir(tmp_path / "tmp")) == []


def test_own_staging_is_live_in_the_same_process(tmp_path: Path) -> None:
    with staging_dir(tmp_path, "entry-mine") as stage:
        assert clean_stale(tmp_path) == []
        assert stage.is_dir()
    assert not stage.exists()


def test_owner_record_without_folder_and_ownerless_folders(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / f"index-x.abc{OWNER_SUFFIX}").write_text('{"pid": 1}')  # died before mkdir: unlocked
    old, young = tmp / "entry-old.123", tmp / "entry-young.456"
    for folder in (old, young):
        folder.mkdir()
        (folder / "w.safetensors").write_bytes(b"x" * 1000)
    day_ago = time.time() - 25 * 3600
    for path in (old / "w.safetensors", old):
        os.utime(path, (day_ago, day_ago))
    assert clean_stale(tmp_path) == []  # a lone record frees nothing; ownerless folders stay
    assert sorted(os.listdir(tmp)) == ["entry-old.123", "entry-young.456"]
    freed = clean_stale(tmp_path, ownerless_age_s=24 * 3600)
    assert [(f.path, f.bytes) for f in freed] == [(old, 1000)]
    assert "no owner record" in freed[0].reason
    assert young.is_dir()


def gc(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentkit", "models", "gc", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "AGENTKIT_HOME": str(home)},
        timeout=120,
        check=False,
    )


def test_models_gc_reports_what_it_freed(tmp_path: Path) -> None:
    pid, stage = kill_writer(tmp_path)
    line = re.escape(f"2.0 MB: tmp/{stage.name} (owner pid {pid} gone)")

    dry = gc(tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.fullmatch(f"would free {line}\n", dry.stdout), dry.stdout
    assert stage.is_dir()

    done = gc(tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(f"freed {line}\n", done.stdout), done.stdout
    assert not stage.exists() and sorted(os.listdir(tmp_path / "tmp")) == []

    again = gc(tmp_path)
    assert (again.returncode, again.stdout) == (0, "nothing to free\n")

"""`command` checks run what the agent may have written (a planted json.py, a conftest.py): they run in
the python tool's bubblewrap sandbox, with the workspace as the only host folder and no environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agentkit.agents.checks import run_check
from agentkit.agents.spec import CommandCheck
from agentkit.tools.sandbox import sandbox_problem

pytestmark = pytest.mark.skipif(sandbox_problem() is not None, reason=f"no bubblewrap sandbox: {sandbox_problem()}")


def test_a_check_passes_and_fails_on_workspace_files(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text("42\n")
    assert run_check(CommandCheck(command="grep -qx 42 out.txt"), tmp_path).passed
    failed = run_check(CommandCheck(command=["grep", "-qx", "41", "out.txt"]), tmp_path)
    assert not failed.passed and failed.detail == "exit code 1 (want 0)"
    assert run_check(CommandCheck(command="exit 3", exit_code=3), tmp_path).passed


def test_a_planted_module_imported_by_a_check_cannot_reach_outside(tmp_path: Path) -> None:
    """The review's attack: write_file plants json.py; the check `python -c 'import json'` imports it."""
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "target.txt").write_text("KEEP")
    (outside / "secret.txt").write_text("SECRET")
    (workspace / "json.py").write_text(
        "import shutil\n"
        f"open({str(outside / 'target.txt')!r}, 'w').write('PWNED')\n"
        f"shutil.copy({str(outside / 'secret.txt')!r}, 'stolen.txt')\n"
    )
    result = run_check(CommandCheck(command=[sys.executable, "-c", "import json"]), workspace)
    assert not result.passed  # the planted module failed: the outside files are not there
    assert (outside / "target.txt").read_text() == "KEEP" and not (workspace / "stolen.txt").exists()


def test_a_check_sees_none_of_the_agents_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKIT_TEST_API_KEY", "sk-secret")
    assert run_check(CommandCheck(command='test -z "$AGENTKIT_TEST_API_KEY"'), tmp_path).passed
    assert os.environ["AGENTKIT_TEST_API_KEY"] == "sk-secret"


def test_a_check_that_hangs_is_stopped(tmp_path: Path) -> None:
    result = run_check(CommandCheck(command="sleep 30", timeout_s=1), tmp_path)
    assert not result.passed and "timed out" in result.detail

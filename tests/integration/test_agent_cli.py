"""`agentkit run` with the real built-in model: the quickstart goal reaches success, a step budget
ends with exit 3, and Ctrl-C mid-run followed by `--resume` completes the run (real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentkit.agents.trace import read_trace

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def _default_sigint() -> None:
    # A shell starts background jobs (`make test &`, some CI runners) with SIGINT ignored, children
    # inherit that, and Python then installs no KeyboardInterrupt handler: Ctrl-C would never land.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _agentkit(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.Popen([sys.executable, "-m", "agentkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=_default_sigint, **kwargs)  # fmt: skip


def _records(runs: Path) -> list[dict]:
    traces = list(runs.glob("*/trace.jsonl"))
    return list(read_trace(traces[0])) if traces else []


def test_quickstart_goal_succeeds_with_the_builtin_model(registry, tmp_path: Path) -> None:
    # the workspace is made by the run (a clean clone has none); plant a stale output in it first
    shutil.copytree(QUICKSTART, tmp_path / "qs", ignore=shutil.ignore_patterns("workspace", "*.py"))
    (tmp_path / "qs" / "workspace").mkdir()
    (tmp_path / "qs" / "workspace" / "result.txt").write_text("stale 50", encoding="utf-8")  # an old output
    proc = _agentkit("run", str(tmp_path / "qs" / "goal.yaml"), "--json", "--runs-dir", str(tmp_path / "runs"))
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "succeeded", err
    assert "50" in (tmp_path / "qs" / "workspace" / "result.txt").read_text()
    assert "stale" not in (tmp_path / "qs" / "workspace" / "result.txt").read_text()
    records = _records(tmp_path / "runs")
    assert records[-1]["type"] == "end" and records[-1]["checks"][0]["passed"]


def _tiny_goal(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "a.txt").write_text("hello", encoding="utf-8")
    goal = tmp_path / "goal.yaml"
    goal.write_text(
        "name: tiny\ngoals:\n  - Use read_file on a.txt.\n  - Use read_file on a.txt again.\n"
        "  - Use list_files.\ntools: [read_file, list_files]\nworkspace: ws\n"
        "model: {model: smollm2-135m-instruct, max_tokens: 64}\n"
        "budgets: {max_steps: 3}\nchecks:\n  - file_exists: never.txt\n",
        encoding="utf-8",
    )
    return goal


def test_budget_exhaustion_exits_3_with_a_complete_trace(registry, tmp_path: Path) -> None:
    proc = _agentkit("run", str(_tiny_goal(tmp_path)), "--max-steps", "1", "--json",
                     "--runs-dir", str(tmp_path / "runs"))  # fmt: skip
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err
    assert json.loads(out)["status"] == "budget_exhausted"
    records = _records(tmp_path / "runs")
    assert [r["type"] for r in records] == ["start", "step", "end"]
    assert records[-1]["checks"] == [{"check": "file_exists never.txt", "passed": False, "detail": "missing"}]


def test_ctrl_c_then_resume_completes(registry, tmp_path: Path) -> None:
    goal, runs = _tiny_goal(tmp_path), tmp_path / "runs"
    proc = _agentkit("run", str(goal), "--runs-dir", str(runs))
    deadline = time.monotonic() + 600
    while not any(r["type"] == "step" for r in _records(runs)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.05)  # the next steps take ~1 s each: signal before the run ends on its own
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    records = _records(runs)
    assert records[-1]["type"] == "end" and records[-1]["status"] == "interrupted"
    run_id = records[0]["run_id"]
    assert f"--resume {run_id}" in err

    proc = _agentkit("run", str(goal), "--resume", run_id, "--json", "--runs-dir", str(runs))
    out, err = proc.communicate(timeout=600)
    # never.txt cannot appear: 3 steps exhaust the budget, or 3 identical calls end it as a loop
    assert proc.returncode == 3, err
    summary = json.loads(out)
    assert summary["run_id"] == run_id and summary["steps"] == 3
    assert summary["status"] in ("budget_exhausted", "loop_detected")
    records = _records(runs)
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == [1, 2, 3]  # no step lost or logged twice across the interruption
    assert [r["type"] for r in records].count("resume") == 1
    assert records[-1]["type"] == "end" and records[-1]["status"] == summary["status"]

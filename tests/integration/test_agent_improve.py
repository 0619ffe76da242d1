"""`agentkit improve` on the real 135M built-in: a round end to end (collect, export, tune, evaluate,
decide) killed at the tune stage and resumed there; nothing to learn from stops before tuning; a
bad suite is refused in one line. The decision rule itself is tested without a model in
tests/unit/test_improve_suite.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agentkit.errors import BadInputError
from agentkit.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("registry")]

WRITE = {"name": "w_{n}", "goals": ["Write the word {word} to {n}.txt."], "tools": ["read_file", "write_file"],
         "budgets": {"max_steps": 2}, "workspace": "ws_{n}", "outputs": ["{n}.txt"],
         "checks": [{"file_contains": "{n}.txt", "text": "{word}"}]}  # fmt: skip


def _goal(folder: Path, n: str, word: str, **changes) -> Path:
    text = json.dumps(WRITE).replace("{n}", n).replace("{word}", word)
    spec = {**json.loads(text), **changes}
    path = folder / f"{n}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _suite(tmp_path: Path, name: str, train: list[str], heldout: list[str], **changes) -> Path:
    goals = tmp_path / "goals"
    goals.mkdir(exist_ok=True)
    for n, word in [("alpha", "hello"), ("beta", "banana"), ("gamma", "orange"), ("delta", "purple")]:
        _goal(goals, n, word)
    suite = {
        "name": name,
        "model": {"model": "smollm2-135m-instruct"},
        "strategy": "guided",
        "train": [f"goals/{g}.yaml" for g in train],
        "heldout": [f"goals/{g}.yaml" for g in heldout],
        "collect": {"attempts": 2, "temperature": 0.7, "seed": 0},
        "evaluate": {"attempts": 1, "temperature": 0.0},
        "tune": {"lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                 "train": {"max_steps": 4, "learning_rate": 1e-3, "batch_size": 2, "max_length": 768}},
        "promote": {"alias": f"{name}-default", "min_gain_se": 1.0, "min_goals": 1},
    }  # fmt: skip
    suite.update(changes)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agentkit", *args]


def test_improve_round_killed_at_tune_resumes_there_and_decides(tmp_path: Path) -> None:
    name = f"imp{os.getpid()}"
    suite = _suite(tmp_path, name, train=["alpha", "beta"], heldout=["gamma", "delta"])
    registry = Registry.default()
    folder = registry.root / "improve" / name
    state_file = folder / "state.json"
    proc = subprocess.Popen(_cli("improve", str(suite)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None:
            if state_file.is_file() and json.loads(state_file.read_text()).get("stage") == "tune":
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)  # killed during the tune stage
        proc.wait()
        assert json.loads(state_file.read_text())["stage"] == "tune"  # a 4-step tune outlasts the poll
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    round_dir = folder / "round-1"
    collected = [json.loads(line) for line in (round_dir / "collect.jsonl").read_text().splitlines()]
    assert len(collected) == 4  # 2 goals x 2 attempts, before the kill
    assert (round_dir / "sft.jsonl").is_file()

    again = subprocess.run(_cli("improve", str(suite), "--json"), capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    log = json.loads(again.stdout)
    # resumed at the tune stage: collect ran no attempt again
    assert len((round_dir / "collect.jsonl").read_text().splitlines()) == 4
    assert len(log) == 1
    row = log[0]
    candidate = f"{name}-r1"
    assert row["candidate"] == candidate and row["round"] == 1 and row["champion"] == "smollm2-135m-instruct"
    assert row["sft_rows"] > 0 and row["train_loss_last"] < row["train_loss_first"]
    # the decision is the paired comparison of what evaluate recorded
    evaluated = [json.loads(line) for line in (round_dir / "evaluate.jsonl").read_text().splitlines()]
    assert sorted((e["who"], Path(e["goal_file"]).stem) for e in evaluated) == sorted(
        (who, g) for who in ("champion", "candidate") for g in ("gamma", "delta")
    )
    after = sum(e["ok"] for e in evaluated if e["who"] == "candidate") / 2
    before = sum(e["ok"] for e in evaluated if e["who"] == "champion") / 2
    assert (row["heldout_before"], row["heldout_after"]) == (before, after)
    card = Registry.default().card(candidate)
    aliases = Registry.default().aliases()
    if row["promoted"]:
        assert aliases[f"{name}-default"]["target"] == candidate and card.stage == "champion"
    else:  # not promoted: still registered, marked as a candidate with the evaluation that kept it out
        assert card.stage == "candidate"
        assert card.evaluations and card.evaluations[-1].evaluation["promoted"] is False
    state = json.loads(state_file.read_text())
    assert state["stage"] == "done"
    # a second call with the same --rounds does nothing more
    third = subprocess.run(_cli("improve", str(suite), "--json"), capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and len(json.loads(third.stdout)) == 1


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid from /proc, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    found = _state_and_parent(pid)
    return found is not None and found[0] != "Z"  # a zombie has exited


def _live_workers(pid: int) -> set[int]:
    """`pid`'s live multiprocessing workers (not its resource tracker)."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        state = _state_and_parent(int(proc.name))
        if state and state[1] == pid and state[0] != "Z":
            try:
                if b"spawn_main" in (proc / "cmdline").read_bytes():
                    found.add(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads worker processes from /proc (Linux)")
def test_improve_workers_end_with_a_killed_improve_and_the_round_resumes_once_per_attempt(tmp_path: Path) -> None:
    name = f"impw{os.getpid()}"
    suite = _suite(tmp_path, name, train=["alpha", "beta"], heldout=["gamma", "delta"])
    folder = Registry.default().root / "improve" / name
    proc = subprocess.Popen(_cli("improve", str(suite), "--workers", "2"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        collect_log = folder / "round-1" / "collect.jsonl"
        deadline = time.monotonic() + 600
        workers: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            workers |= _live_workers(proc.pid)  # two goal runs at a time, each in its own process
            if collect_log.is_file() and collect_log.read_text().strip():
                break  # the first run that ended is recorded at once, not when the others end
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) >= 2, proc.stdout.read().decode()
        time.sleep(0.5)  # a goal run takes seconds: rows recorded only once all had ended would all be here
        assert len(collect_log.read_text().splitlines()) < 4
        os.kill(proc.pid, signal.SIGKILL)  # the improve alone, not its process group
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)]  # the workers ended with it (no orphan goal runs)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert json.loads((folder / "state.json").read_text())["stage"] == "collect"

    again = subprocess.run(_cli("improve", str(suite), "--workers", "2", "--json"), capture_output=True, text=True,
                           timeout=1800)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    (row,) = json.loads(again.stdout)
    round_dir = folder / "round-1"
    collected = [json.loads(line) for line in (round_dir / "collect.jsonl").read_text().splitlines()]
    assert sorted((Path(r["goal_file"]).stem, r["attempt"]) for r in collected) == [
        ("alpha", 0), ("alpha", 1), ("beta", 0), ("beta", 1)]  # each attempt once, killed or not
    for r in collected:  # each run wrote into its own attempt's folder
        assert (round_dir / "collect" / Path(r["goal_file"]).stem / str(r["attempt"]) / "runs" / r["run_id"]).exists()
    evaluated = [json.loads(line) for line in (round_dir / "evaluate.jsonl").read_text().splitlines()]
    assert sorted((e["who"], Path(e["goal_file"]).stem) for e in evaluated) == sorted(
        (who, g) for who in ("champion", "candidate") for g in ("gamma", "delta")
    )
    assert row["train_runs"] == 4
    assert row["heldout_before"] == sum(e["ok"] for e in evaluated if e["who"] == "champion") / 2
    assert row["heldout_after"] == sum(e["ok"] for e in evaluated if e["who"] == "candidate") / 2


def test_improve_with_no_successful_train_run_stops_and_tunes_nothing(tmp_path: Path) -> None:
    from agentkit.agents.improve import Improver

    name = f"none{os.getpid()}"
    suite = _suite(tmp_path, name, train=["alpha"], heldout=["gamma"], collect={"attempts": 1, "temperature": 0.7})
    # a check no run can pass: the word is never in the sentence
    _goal(tmp_path / "goals", "alpha", "hello", checks=[{"file_contains": "alpha.txt", "text": "zq-never-written"}])
    with pytest.raises(BadInputError, match="none of the 1 train runs succeeded.*nothing was tuned"):
        Improver(suite).run()
    assert f"{name}-r1" not in Registry.default()
    # the round goes back to collect, the failed runs kept aside: a later call collects again
    folder = Registry.default().root / "improve" / name
    assert json.loads((folder / "state.json").read_text())["stage"] == "collect"
    assert not (folder / "round-1" / "collect.jsonl").exists()
    assert len(list((folder / "round-1").glob("collect-failed-*/collect.jsonl"))) == 1


def test_improve_refuses_to_resume_a_round_after_the_suite_changed(tmp_path: Path) -> None:
    from agentkit.agents.improve import Improver

    name = f"edit{os.getpid()}"
    suite = _suite(tmp_path, name, train=["alpha"], heldout=["gamma"])
    folder = Registry.default().root / "improve" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(json.dumps({"round": 1, "stage": "evaluate", "champion": None,
                                                   "suite_sha256": "0" * 64}))  # fmt: skip
    with pytest.raises(BadInputError, match="changed since round 1 started"):
        Improver(suite).run()


def test_improve_cli_refuses_overlapping_goals_in_one_line(tmp_path: Path) -> None:
    suite = _suite(tmp_path, "overlap", train=["alpha", "beta"], heldout=["beta", "gamma"])
    out = subprocess.run(_cli("improve", str(suite)), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "held-out goal(s) w_beta are also train goals" in out.stderr

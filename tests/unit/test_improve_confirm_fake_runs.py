"""bench/improve_confirm.py with fake goal runs (the logic under test is its bookkeeping, not the
model): both sides run each new goal once, as the loop's evaluate stage would; the champion's gain is
paired per goal on the new goals, then pooled with the held-out runs of the improve folder; a second
call resumes from the recorded runs and runs nothing again; goals of the suite are refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _goal(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name,
        "goals": [f"Write {name} to {name}.txt."],
        "checks": [{"file_exists": f"{name}.txt"}],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _lines(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _run(goal: str, ok: bool, tokens: int = 100) -> dict[str, Any]:
    return {"goal": goal, "run_id": f"r-{goal}", "status": "succeeded" if ok else "failed", "ok": ok, "steps": 2,
            "tokens": tokens, "seconds": 10.0}  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A suite of one train and two held-out goals, after one round that promoted s-r1."""
    monkeypatch.setenv("AGENTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(BENCH))
    for module in ("improve_confirm", "improve_lift", "agent_eval"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    _goal(tmp_path / "train", "t1")
    held = [_goal(tmp_path / "heldout", n) for n in ("h1", "h2")]
    for name in ("c1", "c2", "c3"):
        _goal(tmp_path / "confirm", name)
    suite = {"name": "s", "model": {"model": "smollm2-135m-instruct"}, "train": ["train/*.yaml"],
             "heldout": ["heldout/*.yaml"]}  # fmt: skip
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    folder = tmp_path / "home" / "improve" / "s"
    _lines(folder / "log.jsonl", [{"round": 1, "champion": "smollm2-135m-instruct", "candidate": "s-r1",
                                   "promoted": True}])  # fmt: skip
    outcomes = {
        ("champion", "h1"): False,
        ("candidate", "h1"): True,
        ("champion", "h2"): True,
        ("candidate", "h2"): True,
    }
    _lines(folder / "round-1" / "evaluate.jsonl",
           [{"who": who, "goal_file": str(goal), "attempt": 0, **_run(goal.stem, outcomes[who, goal.stem])}
            for goal in held for who in ("champion", "candidate")])  # fmt: skip
    return tmp_path


def test_confirm_pairs_new_goals_pools_with_heldout_and_resumes_fake_runs(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentkit.agents import improve_runs

    calls: list[dict[str, Any]] = []
    wins = {("start", "c1"): False, ("champion", "c1"): True, ("start", "c2"): True, ("champion", "c2"): False,
            ("start", "c3"): False, ("champion", "c3"): True}  # fmt: skip

    def fake_run_goals(jobs: list[tuple[dict[str, Any], dict[str, Any]]], workers: int, record: Any) -> None:
        for key, kwargs in jobs:
            calls.append({**kwargs, "who": key["who"], "workers": workers})
            record(
                key, _run(Path(kwargs["goal_file"]).stem, wins[key["who"], Path(kwargs["goal_file"]).stem])
            )

    monkeypatch.setattr(improve_runs, "run_goals", fake_run_goals)
    import improve_confirm

    args = ["--suite", str(home / "suite.yaml"), "--goals", str(home / "confirm"), "--adapter", "s-r1",
            "--workers", "2", "--json"]  # fmt: skip
    assert improve_confirm.main(args) == 0
    out = capsys.readouterr().out
    assert len(calls) == 6 and {c["workers"] for c in calls} == {2}
    assert {(c["who"], c["adapter"]) for c in calls} == {("start", None), ("champion", "s-r1")}
    assert {c["temperature"] for c in calls} == {0.0}  # the suite's evaluate settings: greedy
    result = json.loads(out[out.index("{") :])
    assert result["confirm"]["won"] == ["c1", "c3"] and result["confirm"]["lost"] == ["c2"]
    assert result["confirm"]["gain"] == pytest.approx(1 / 3)
    assert result["heldout"]["won"] == ["h1"] and result["heldout"]["goals"] == 2
    assert result["pooled"]["goals"] == 5 and result["pooled"]["gain_goals"] == 2.0
    assert "confirm: s-r1 over smollm2-135m-instruct: 33% -> 67% on 3 goals" in out

    calls.clear()  # every run is recorded: a second call runs nothing and prints the same figures
    assert improve_confirm.main(args) == 0
    assert calls == [] and "0 runs to go" in capsys.readouterr().out


def test_confirm_refuses_the_suites_own_goals_and_a_missing_adapter(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import improve_confirm

    suite = ["--suite", str(home / "suite.yaml")]
    assert improve_confirm.main([*suite, "--goals", str(home / "heldout"), "--adapter", "s-r1"]) == 2
    assert "goals h1, h2 are also the suite's train or held-out goals" in capsys.readouterr().out
    assert (
        improve_confirm.main([*suite, "--goals", str(home / "confirm")]) == 2
    )  # no alias: nothing promoted yet
    assert "no promoted adapter behind 'agent-default'" in capsys.readouterr().out

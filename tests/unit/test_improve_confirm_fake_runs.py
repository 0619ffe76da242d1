"""bench/improve_confirm.py with fake goal runs and fake adapter cards (the logic under test is its
bookkeeping, not the model): both sides run each new goal as the loop's evaluate stage would; the
champion's gain is paired per goal on the new goals, then pooled with the held-out runs of the
improve folder; a killed call resumes at the runs not recorded, a second adapter reuses the starting
model's runs only; the suite's own goals (by name or sentence) are refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkit.registry import Registry
from agentkit.registry.card import SourceInfo

BENCH = Path(__file__).resolve().parents[2] / "bench"
BASE = "smollm2-135m-instruct"
WINS = {"c1": (False, True), "c2": (True, False), "c3": (False, True)}  # goal -> (start ok, champion ok)


def _goal(folder: Path, name: str, sentence: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": name, "goals": [sentence or f"Write {name} to {name}.txt."],
            "checks": [{"file_exists": f"{name}.txt"}]}  # fmt: skip
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _lines(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _run(goal: str, ok: bool) -> dict[str, Any]:
    return {"goal": goal, "run_id": f"r-{goal}", "status": "succeeded" if ok else "failed", "ok": ok, "steps": 2,
            "tokens": 100, "seconds": 10.0}  # fmt: skip


def _adapter(home: Path, entry_id: str, base: str = BASE) -> None:
    """A card with a dummy weights file: enough for the checks made before anything loads."""

    def write(stage: Path) -> dict[str, Any]:
        (stage / "adapter_model.safetensors").write_bytes(b"never read")
        return {"kind": "adapter", "task": "causal_lm", "base": base, "source": SourceInfo(type="tuning", ref="test")}

    Registry(home).create_entry(entry_id, write)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A suite of one train and two held-out goals, after one round that promoted s-r1."""
    monkeypatch.setenv("AGENTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(BENCH))
    for module in ("improve_confirm", "improve_lift", "agent_eval"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    for entry_id in ("s-r1", "s-r2"):
        _adapter(tmp_path / "home", entry_id)
    _adapter(tmp_path / "home", "other-r1", base="qwen2.5-coder-0.5b-instruct")
    _goal(tmp_path / "train", "t1")
    held = [_goal(tmp_path / "heldout", n) for n in ("h1", "h2")]
    for name in WINS:
        _goal(tmp_path / "confirm", name)
    suite = {"name": "s", "model": {"model": BASE, "engine": "llamacpp"}, "strategy": "plan",
             "train": ["train/*.yaml"], "heldout": ["heldout/*.yaml"], "evaluate": {"seed": 7}}  # fmt: skip
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    folder = tmp_path / "home" / "improve" / "s"
    _lines(folder / "log.jsonl", [{"round": 1, "champion": BASE, "candidate": "s-r1", "promoted": True}])
    outcomes = {("champion", "h1"): False, ("candidate", "h1"): True,
                ("champion", "h2"): True, ("candidate", "h2"): True}  # fmt: skip
    _lines(folder / "round-1" / "evaluate.jsonl",
           [{"who": who, "goal_file": str(goal), "attempt": 0, **_run(goal.stem, outcomes[who, goal.stem])}
            for goal in held for who in ("champion", "candidate")])  # fmt: skip
    return tmp_path


class FakeRuns:
    """`run_goals` that records a scripted outcome per run; `stop_after` runs, it raises as a kill would."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.stop_after = stop_after

    def __call__(self, jobs: list[tuple[dict[str, Any], dict[str, Any]]], workers: int, record: Any) -> None:
        for key, kwargs in jobs:
            if self.stop_after is not None and len(self.calls) == self.stop_after:
                raise KeyboardInterrupt
            self.calls.append({**kwargs, "who": key["who"], "workers": workers})
            goal = Path(kwargs["goal_file"]).stem
            record(key, _run(goal, WINS[goal][key["who"] == "champion"]))


def _main(home: Path, *extra: str) -> int:
    import improve_confirm

    return improve_confirm.main(["--suite", str(home / "suite.yaml"), "--goals", str(home / "confirm"), *extra])


def test_confirm_pairs_new_goals_pools_with_heldout_and_resumes_fake_runs(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentkit.agents import improve_runs

    runs = FakeRuns(stop_after=2)
    monkeypatch.setattr(improve_runs, "run_goals", runs)
    with pytest.raises(KeyboardInterrupt):  # killed after two runs
        _main(home, "--adapter", "s-r1", "--workers", "2")
    runs.stop_after = None
    assert _main(home, "--adapter", "s-r1", "--workers", "2", "--json") == 0
    out = capsys.readouterr().out
    assert len(runs.calls) == 6, "the two recorded runs are not run again"
    assert "4 runs to go, 2 at a time" in out and {c["workers"] for c in runs.calls} == {2}
    # As the loop's evaluate stage runs them: the suite's engine and strategy, greedy, its seed, its registry.
    assert {(c["who"], c["adapter"]) for c in runs.calls} == {("start", None), ("champion", "s-r1")}
    settings = {(c["engine"], c["strategy"], c["temperature"], c["seed"]) for c in runs.calls}
    assert settings == {("llamacpp", "plan", 0.0, 7)}
    assert {Path(c["home"]) for c in runs.calls} == {home / "home"}
    result = json.loads(out[out.index("{") :])
    assert result["confirm"]["won"] == ["c1", "c3"] and result["confirm"]["lost"] == ["c2"]
    assert result["confirm"]["gain"] == pytest.approx(1 / 3)
    assert result["heldout"]["won"] == ["h1"] and result["heldout"]["goals"] == 2
    assert result["heldout_label"] == "round 1's candidate, promoted: these goals chose it"
    assert result["pooled"]["goals"] == 5 and result["pooled"]["gain_goals"] == 2.0
    assert "confirm: s-r1 over smollm2-135m-instruct: 33% -> 67% on 3 goals" in out

    runs.calls.clear()  # every run is recorded: a second call runs nothing and prints the same figures
    assert _main(home, "--adapter", "s-r1") == 0
    assert runs.calls == [] and "0 runs to go" in capsys.readouterr().out

    # Another adapter: its own runs; the starting model's are the same and are reused.
    assert _main(home, "--adapter", "s-r2") == 0
    out = capsys.readouterr().out
    assert {(c["who"], c["adapter"]) for c in runs.calls} == {("champion", "s-r2")} and len(runs.calls) == 3
    assert "not pooled with the held-out goals: s-r2 was no round's candidate" in out


def test_confirm_refuses_the_suites_own_goals_and_what_cannot_be_confirmed(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentkit.agents import improve_runs

    runs = FakeRuns(stop_after=0)  # a refusal runs nothing
    monkeypatch.setattr(improve_runs, "run_goals", runs)
    assert _main(home, "--goals", str(home / "heldout"), "--adapter", "s-r1") == 2
    assert "goals h1, h2 are also the suite's train or held-out goals" in capsys.readouterr().out
    _goal(home / "renamed", "c9", sentence="Write h1 to h1.txt.")  # a held-out goal under another name
    assert _main(home, "--goals", str(home / "renamed"), "--adapter", "s-r1") == 2
    assert "goals c9 are also the suite's" in capsys.readouterr().out
    assert _main(home) == 2  # no alias yet: the champion is the base the suite started from
    assert "nothing to confirm: smollm2-135m-instruct is what s started from" in capsys.readouterr().out
    assert _main(home, "--adapter", "other-r1") == 2
    out = capsys.readouterr().out
    assert "other-r1 is an adapter of qwen2.5-coder-0.5b-instruct, not of smollm2-135m-instruct" in out
    assert runs.calls == []

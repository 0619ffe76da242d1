"""`agentkit improve` across rounds, with fake goal runs and fake exported rows (the logic under
test is the loop's bookkeeping, not the model): each round samples with new seeds, and
`tune.data: all` trains on the rows of every round so far, each row once."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkit.agents import export
from agentkit.agents import improve_runs
from agentkit.agents.improve import Improver, collect_seed
from agentkit.agents.improve_runs import run_goals


def _suite(tmp_path: Path, **fields: Any) -> Path:
    (tmp_path / "g").mkdir(exist_ok=True)
    for name in ("a", "b"):
        spec = {"name": name, "goals": [f"Write {name} to {name}.txt."], "checks": [{"file_exists": f"{name}.txt"}]}
        (tmp_path / "g" / f"{name}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    data = {"name": "s", "model": {"model": "smollm2-135m-instruct"}, "train": ["g/a.yaml"], "heldout": ["g/b.yaml"],
            "collect": {"attempts": 2, "seed": 5}, **fields}  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _row(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}], "tools": []}


def test_each_round_collects_with_new_seeds_fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seeds: list[tuple[int, int]] = []

    def fake_run_goal(**kwargs: Any) -> dict[str, Any]:
        seeds.append((int(Path(kwargs["into"]).parts[-4].split("-")[1]), kwargs["seed"]))
        return {"goal": "a", "run_id": f"r{kwargs['seed']}", "status": "succeeded", "ok": True, "steps": 1,
                "tokens": 10, "seconds": 0.1}  # fmt: skip

    monkeypatch.setattr(improve_runs, "run_goal", fake_run_goal)
    improver = Improver(_suite(tmp_path), home=tmp_path / "home")
    for round_number in (1, 2, 3):
        state = {"round": round_number, "champion": None}
        improver._collect(state, improver._round_dir(state))
    assert seeds == [(1, 5), (1, 6), (2, 1005), (2, 1006), (3, 2005), (3, 2006)]
    assert [collect_seed(5, k, a) for k in (1, 2) for a in (0, 1)] == [5, 6, 1005, 1006]


@pytest.mark.parametrize(("data", "expected"), [("round", ["again", "new"]), ("all", ["again", "new", "old"])])
def test_tune_data_all_adds_the_rows_of_earlier_rounds_once_fake_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: str, expected: list[str]
) -> None:
    improver = Improver(_suite(tmp_path, tune={"data": data}), home=tmp_path / "home")
    earlier = improver.folder / "round-1"
    earlier.mkdir(parents=True)
    (earlier / "sft.jsonl").write_text("".join(json.dumps(_row(t)) + "\n" for t in ("old", "again")))
    folder = improver._round_dir({"round": 2})
    (folder / "collect" / "a" / "0" / "runs").mkdir(parents=True)
    (folder / "collect.jsonl").write_text(json.dumps({"goal": "a", "attempt": 0, "ok": True}) + "\n")
    monkeypatch.setattr(export, "sft_examples", lambda store: [_row("again"), _row("new")])
    monkeypatch.setattr(export, "plan_examples", lambda store: [])
    monkeypatch.setattr(export, "dpo_pairs", lambda store: [])
    state: dict[str, Any] = {"round": 2, "champion": None}
    improver._export(state, folder)
    written = [json.loads(line)["messages"][0]["content"] for line in (folder / "sft.jsonl").read_text().splitlines()]
    assert sorted(written) == expected
    assert state["data"] == {"sft_rows": len(expected), "sft_rows_this_round": 2, "dpo_pairs": 0}


def test_an_unknown_tune_data_value_is_refused_by_field(tmp_path: Path) -> None:
    from agentkit.agents.improve_suite import load_suite
    from agentkit.errors import BadInputError

    with pytest.raises(BadInputError, match="tune.data"):
        load_suite(_suite(tmp_path, tune={"data": "everything"}))


def _sleep_then(seconds: float, fail: bool = False) -> dict[str, Any]:  # runs in a worker process
    time.sleep(seconds)
    if fail:
        raise RuntimeError("boom in a worker")
    return {"slept": seconds}


def test_a_failed_run_in_a_worker_keeps_the_runs_that_ended_and_does_not_wait_for_the_rest_fake_runs() -> None:
    recorded: list[int] = []
    jobs = [({"k": 1}, {"seconds": 0.1}), ({"k": 2}, {"seconds": 1.5, "fail": True}), ({"k": 3}, {"seconds": 120})]
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="boom in a worker"):
        run_goals(jobs, 2, lambda key, row: recorded.append(key["k"]), run=_sleep_then)
    assert recorded == [1]  # the run that ended well is kept; the 120 s one is stopped, not waited for
    assert time.monotonic() - started < 90
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()  # no worker left holding a model copy

"""`agentkit runs list | show | export` on runs recorded with a scripted fake model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit import Agent
from agentkit.agents.fake import ScriptedChatModel
from agentkit.cli.app import main

GOALS = ["Use read_file on numbers.txt", "Add them up with the calculator", "Save the total with write_file"]
GOOD = [
    ("read_file", {"path": "numbers.txt"}),
    ("calculator", {"expression": "17 + 25 + 8"}),
    ("write_file", {"path": "summary.txt", "content": "Total: 50"}),
]
BAD = [("read_file", {"path": "numbers.txt"}), ("calculator", {"expression": "17 + 17"}),
       ("write_file", {"path": "summary.txt", "content": "Total: 34"}), ("finish", {"answer": "34"})]  # fmt: skip


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, list[str]]:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "numbers.txt").write_text("17\n25\n8\n", encoding="utf-8")
    ids = []
    for script in (GOOD, BAD):
        agent = Agent(model=ScriptedChatModel(script=script), goals=GOALS, workspace=ws, strategy="guided",
                      tools=["read_file", "write_file", "calculator"], outputs=["summary.txt"],
                      checks=[{"file_contains": "summary.txt", "text": "50"}], runs_dir=tmp_path / "runs")  # fmt: skip
        ids.append(agent.run().run_id)
    return tmp_path / "runs", ids


def test_runs_list_and_show(runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    root, (good, bad) = runs
    assert main(["runs", "list", "--runs-dir", str(root), "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[good]["status"] == "succeeded" and rows[bad]["status"] == "failed"
    assert rows[good]["steps"] == 3
    assert main(["runs", "show", good, "--runs-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert 'calculator(expression="17 + 25 + 8")' in out and "-> 50" in out and "pass" in out
    assert main(["runs", "show", "nope", "--runs-dir", str(root)]) == 2


def test_runs_export_sft_is_the_prompt_plus_the_call(runs: tuple[Path, list[str]], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    root, (good, _) = runs
    out = tmp_path / "sft.jsonl"
    assert main(["runs", "export", "--format", "sft", "-o", str(out), "--runs-dir", str(root)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["run_id"] for r in rows} == {good}  # only the successful run
    first = rows[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    call = first["messages"][-1]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "read_file"
    assert json.loads(call["function"]["arguments"]) == {"path": "numbers.txt"}
    # guided: the step bound only its planned tool, and that is what the example says
    assert [t["function"]["name"] for t in rows[1]["tools"]] == ["calculator"]
    assert "17\n25\n8" in rows[1]["messages"][1]["content"]  # the observation as the loop rendered it


def test_runs_export_dpo_pairs_success_against_failure(runs: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = runs
    out = tmp_path / "dpo.jsonl"
    assert main(["runs", "export", "--format", "dpo", "-o", str(out), "--runs-dir", str(root)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # goals 2 and 3 differ between the runs (17 + 17, Total: 34); goal 1's call is identical: no pair
    assert len(rows) == 2
    chosen = json.loads(rows[0]["chosen"][0]["tool_calls"][0]["function"]["arguments"])
    rejected = json.loads(rows[0]["rejected"][0]["tool_calls"][0]["function"]["arguments"])
    assert chosen == {"expression": "17 + 25 + 8"} and rejected == {"expression": "17 + 17"}
    assert rows[0]["prompt"][-1]["role"] == "user"


def test_runs_export_unknown_format_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "export", "--format", "csv", "-o", str(tmp_path / "x")]) == 2
    assert "sft or dpo" in capsys.readouterr().err

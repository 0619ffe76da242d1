"""Strategy plan on the real 135M built-in: the planner's reply is decoded under the plan grammar,
so it always parses and names only enabled tools, on the first plan and on every re-plan; every
step's call is a call of its plan step's tool. (Whether the 135M model reaches the goal is a
measurement, in bench/agent_eval.py, not a test.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit import Agent
from agentkit.agents.agent import STATUSES
from agentkit.agents.trace import read_trace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("registry")]


def test_plans_parse_and_name_only_enabled_tools_on_the_real_model(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "prices.txt").write_text("12.50\n30\n7.25\n", encoding="utf-8")
    agent = Agent(
        model={"model": "smollm2-135m-instruct", "engine": "llamacpp"},
        tools=["read_file", "write_file"],  # no calculator, no list_files: a plan may not name them
        goals=["Read prices.txt, add up the prices with the calculator and write the total to total.txt."],
        workspace=ws, runs_dir=tmp_path / "runs", strategy="plan",
        checks=[{"file_contains": "total.txt", "text": "49.75"}],
        budgets={"max_steps": 4, "max_replans": 2},
    )  # fmt: skip
    result = agent.run()
    assert result.status in STATUSES
    records = list(read_trace(result.trace_path))
    plans = [r for r in records if r["type"] == "plan"]
    assert plans and records[0]["strategy"] == "plan"
    enabled = {"read_file", "write_file", "finish"}
    for plan in plans:
        reply = json.loads(plan["reply"])  # the grammar: it always parses
        assert set(reply) == {"steps"} and 1 <= len(reply["steps"]) <= 6
        assert all(set(s) == {"intent", "tool"} and s["tool"] in enabled for s in reply["steps"])
        assert plan["steps"] == reply["steps"]
        # what the planner read: the schema's fields in the system turn (as export trains on it)
        assert plan["messages"][0]["role"] == "system" and "steps" in plan["messages"][0]["content"]
    # each step called the tool of its plan step (bound alone, under the tool-call grammar)
    current = None
    for record in records:
        if record["type"] == "plan":
            current, index = record["steps"], 0
        elif record["type"] == "step":
            assert record["action"] == current[index]["tool"]
            if record["ok"]:
                index += 1

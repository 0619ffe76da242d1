"""Strategy plan's bookkeeping with a scripted fake model (the logic under test is not the model):
the plan in the trace and in `runs show`, acting step by step with results carried forward,
re-plans after a failed step and after failing checks (counted and limited by budgets), the hint
a re-plan gets never leaks a check's expected text, resume keeps the checkpointed plan, and
`strategy: auto`'s choice."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from agentkit import Agent
from agentkit.agents.fake import ScriptedChatModel
from agentkit.agents.trace import read_trace


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "prices.txt").write_text("12.50\n30\n7.25\n", encoding="utf-8")
    return ws


PLAN = {"steps": [
    {"intent": "read the prices", "tool": "read_file"},
    {"intent": "add them up", "tool": "calculator"},
    {"intent": "write the total", "tool": "write_file"},
]}  # fmt: skip
ACTIONS = [
    ("read_file", {"path": "prices.txt"}),
    ("calculator", {"expression": "12.50 + 30 + 7.25"}),
    ("write_file", {"path": "total.txt", "content": "49.75"}),
]
GOAL = "Read prices.txt, add up the prices and write the total to total.txt."


def _agent(workspace: Path, script: list, plans: list, **kwargs) -> tuple[Agent, ScriptedChatModel]:
    model = ScriptedChatModel(script=script, plans=plans)
    kwargs.setdefault("goals", [GOAL])
    kwargs.setdefault("checks", [{"file_contains": "total.txt", "text": "49.75"}])
    agent = Agent(model=model, workspace=workspace, runs_dir=workspace.parent / "runs", strategy="plan", **kwargs)
    return agent, model


def _records(result, kind: str) -> list[dict]:
    return [r for r in read_trace(result.trace_path) if r["type"] == kind]


def test_fake_plan_is_traced_then_acted_on_step_by_step_with_results_carried_forward(workspace: Path) -> None:
    agent, model = _agent(workspace, ACTIONS, [PLAN])
    result = agent.run()
    assert result.status == "succeeded" and result.steps == 3
    records = list(read_trace(result.trace_path))
    kinds = [r["type"] for r in records]
    assert kinds == ["start", "plan", "step", "step", "step", "end"]
    assert records[0]["strategy"] == "plan"
    assert records[1]["steps"] == PLAN["steps"] and records[1]["replan"] == 0
    assert json.loads(records[1]["reply"]) == PLAN
    # the plan's tokens count with the steps'
    assert result.tokens == 28 + 3 * 15
    # step 2's prompt shows the plan (step 1 done) and step 1's result; step 3's the calculator's answer
    second, third = model.seen[1][-1].content, model.seen[2][-1].content
    assert "1. read the prices [read_file] (done)" in second and "Now step 2: add them up" in second
    assert "12.50" in second and "-> 49.75" in third
    # the planner saw the goal and the tools, and its schema admits only the enabled tools
    assert GOAL in model.seen_plans[0][-1].content
    enum = model.plan_schemas[0]["properties"]["steps"]["items"]["properties"]["tool"]["enum"]
    assert sorted(enum) == sorted(["read_file", "write_file", "list_files", "calculator", "finish"])


def test_fake_plan_schema_never_names_a_disabled_tool(workspace: Path) -> None:
    agent, model = _agent(workspace, ACTIONS, [PLAN], tools=["read_file", "write_file"])
    agent.run()
    enum = model.plan_schemas[0]["properties"]["steps"]["items"]["properties"]["tool"]["enum"]
    assert "calculator" not in enum and "python" not in enum and set(enum) == {"read_file", "write_file", "finish"}


def test_fake_a_failed_step_triggers_a_replan_from_what_was_seen(workspace: Path) -> None:
    first = {"steps": [{"intent": "read the total file", "tool": "read_file"},
                       {"intent": "write the total", "tool": "write_file"}]}  # fmt: skip
    script = [("read_file", {"path": "total_prices.txt"}), *ACTIONS]
    agent, model = _agent(workspace, script, [first, PLAN])
    result = agent.run()
    assert result.status == "succeeded"
    plans = _records(result, "plan")
    assert [p["replan"] for p in plans] == [0, 1]
    assert "read_file" in plans[1]["reason"] and "total_prices.txt" in plans[1]["reason"]
    replan_prompt = model.seen_plans[1][-1].content
    assert "Done so far:" in replan_prompt and "Problem:" in replan_prompt and "total_prices.txt" in replan_prompt
    # the new plan starts at its first step
    assert "Now step 1: read the prices" in model.seen[1][-1].content


def test_fake_replans_are_limited_by_budgets(workspace: Path) -> None:
    script = [("read_file", {"path": "missing.txt"}), ("read_file", {"path": "gone.txt"}),
              ("read_file", {"path": "nope.txt"}), ("read_file", {"path": "none.txt"})]  # fmt: skip
    agent, model = _agent(workspace, script, [PLAN], budgets={"max_replans": 1, "max_steps": 4})
    result = agent.run()
    assert result.status == "budget_exhausted"
    assert [p["replan"] for p in _records(result, "plan")] == [0, 1]  # one re-plan, then the same plan again
    assert model.plan_calls == 2


def test_fake_failing_checks_after_the_last_step_replan_without_leaking_the_answer(workspace: Path) -> None:
    wrong = [ACTIONS[0], ACTIONS[1], ("write_file", {"path": "total.txt", "content": "48"}),
             *ACTIONS]  # fmt: skip
    agent, model = _agent(workspace, wrong, [PLAN, PLAN])
    result = agent.run()
    assert result.status == "succeeded" and result.steps == 6
    reason = _records(result, "plan")[1]["reason"]
    assert "total.txt does not hold the right content" in reason
    assert "49.75" not in reason and "49.75" not in model.seen_plans[1][-1].content.split("Problem:")[1]


def test_fake_failing_checks_with_no_replan_left_end_the_run_as_failed(workspace: Path) -> None:
    wrong = [ACTIONS[0], ACTIONS[1], ("write_file", {"path": "total.txt", "content": "48"})]
    agent, _ = _agent(workspace, wrong, [PLAN], budgets={"max_replans": 0})
    result = agent.run()
    assert result.status == "failed" and result.steps == 3
    assert not result.checks[0]["passed"]


def test_fake_finish_as_a_plan_step_answers_the_goal(workspace: Path) -> None:
    plan = {"steps": [{"intent": "read the prices", "tool": "read_file"}, {"intent": "answer", "tool": "finish"}]}
    agent, _ = _agent(workspace, [ACTIONS[0], ("finish", {"answer": "three prices"})], [plan], checks=[],
                      goals=["How many prices are in prices.txt?"])  # fmt: skip
    result = agent.run()
    assert result.status == "finished" and result.final_answer == "three prices" and result.steps == 2


def test_fake_each_goal_gets_its_own_plan(workspace: Path) -> None:
    one = {"steps": [{"intent": "read", "tool": "read_file"}]}
    two = {"steps": [{"intent": "write", "tool": "write_file"}]}
    agent, model = _agent(workspace, [ACTIONS[0], ("write_file", {"path": "a.txt", "content": "x"})], [one, two],
                          goals=["Read prices.txt", "Write x to a.txt"], checks=[])  # fmt: skip
    result = agent.run()
    assert result.status == "finished"
    assert [p["goal_index"] for p in _records(result, "plan")] == [0, 1]


def test_fake_runs_show_prints_the_plan(workspace: Path) -> None:
    from typer.testing import CliRunner

    from agentkit.cli.app import app

    agent, _ = _agent(workspace, ACTIONS, [PLAN])
    result = agent.run()
    out = CliRunner().invoke(app, ["runs", "show", result.run_id, "--runs-dir", str(workspace.parent / "runs")])
    assert out.exit_code == 0, out.output
    assert "plan for goal 1" in out.output and "2. add them up [calculator]" in out.output


def test_fake_resume_keeps_the_checkpointed_plan_once(workspace: Path) -> None:
    class Stop(Exception):
        pass

    agent, model = _agent(workspace, ACTIONS, [PLAN])
    records = agent.stream()
    seen = []
    for record in records:
        seen.append(record)
        if record["type"] == "step" and record["step"] == 1:
            break  # like Ctrl-C between steps
    records.close()
    run_id = agent.run_id
    again, model2 = _agent(workspace, ACTIONS[1:], [PLAN])
    result = again.run(resume=run_id)
    assert result.status == "succeeded" and model2.plan_calls == 0  # the plan came from the checkpoint
    plans = _records(result, "plan")
    assert len(plans) == 1 and [r["step"] for r in _records(result, "step")] == [1, 2, 3]


# ---- strategy auto -------------------------------------------------------------------------------
def _safetensors(folder: Path, shapes: dict[str, list[int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    header = json.dumps({n: {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for n, s in shapes.items()}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)


def test_parameter_count_reads_only_the_headers(tmp_path: Path) -> None:
    from agentkit.agents.strategy import parameter_count

    _safetensors(tmp_path / "m", {"a": [1000, 300], "b": [7], "__metadata__": {}} | {})
    assert parameter_count(tmp_path / "m") == 300_007


def test_auto_picks_plan_for_a_remote_provider_and_guided_for_an_object_of_unknown_size() -> None:
    from agentkit.agents.strategy import resolve_strategy
    from agentkit.models.provider import ModelSpec

    fake = ScriptedChatModel()
    assert resolve_strategy("auto", ModelSpec(provider="openai", model="gpt-4o-mini"), fake) == "plan"
    assert resolve_strategy("auto", fake, fake) == "guided"
    assert resolve_strategy("free", ModelSpec(provider="openai", model="x"), fake) == "free"


def test_auto_follows_the_size_of_a_local_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentkit.agents import strategy
    from agentkit.models.chat_model import LocalChatModel

    small, large = tmp_path / "small", tmp_path / "large"
    _safetensors(small, {"w": [1000, 1000]})
    _safetensors(large, {"w": [strategy.PLAN_MIN_PARAMS]})

    class Reg:
        def path(self, entry_id: str) -> Path:
            return {"small": small, "large": large}[entry_id]

        def resolve_chat(self, model: str, adapter: str | None) -> tuple[str, str | None]:
            return model, adapter

    monkeypatch.setattr(LocalChatModel, "_registry", lambda self: Reg())
    assert strategy.resolve_strategy("auto", None, LocalChatModel(model="small")) == "guided"
    assert strategy.resolve_strategy("auto", None, LocalChatModel(model="large")) == "plan"


def test_unknown_strategy_names_the_choices(workspace: Path) -> None:
    from agentkit.errors import BadInputError

    with pytest.raises(BadInputError, match="auto, plan, guided, free"):
        Agent(model=ScriptedChatModel(), goals=["x"], workspace=workspace, strategy="smart")


def test_truncate_keeps_a_plan_after_the_last_step_only_if_it_is_the_checkpointed_one(tmp_path: Path) -> None:
    from agentkit.agents.trace import TraceWriter

    steps_a = [{"intent": "read", "tool": "read_file"}]
    steps_b = [{"intent": "list", "tool": "list_files"}]
    records = [
        {"type": "start"},
        {"type": "plan", "goal_index": 0, "steps": steps_a, "replan": 0, "after_step": 0},
        {"type": "step", "step": 1},
        {"type": "plan", "goal_index": 0, "steps": steps_b, "replan": 1, "after_step": 1},  # made after step 1
        {"type": "step", "step": 2},  # not checkpointed
        {"type": "end"},
    ]

    def truncated(state: dict) -> list[dict]:
        path = tmp_path / "trace.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        TraceWriter(path).truncate_to(1, state)
        return [r for r in read_trace(path) if r["type"] == "plan"]

    saved = {"plan": steps_b, "planned_goal": 0, "replans": 1, "replan_reason": None}
    assert [p["steps"] for p in truncated(saved)] == [steps_a, steps_b]
    # the checkpoint still has the re-plan pending: the resumed run re-plans, so the record goes
    pending = {"plan": steps_a, "planned_goal": 0, "replans": 0, "replan_reason": "read failed"}
    assert [p["steps"] for p in truncated(pending)] == [steps_a]
    # the same steps, but the checkpoint counts no re-plan yet
    assert [p["steps"] for p in truncated({**saved, "replans": 0, "plan": steps_b})] == [steps_a]

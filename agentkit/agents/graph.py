"""The agent loop as a LangGraph `StateGraph`: plan -> act -> observe -> critique -> (plan | end).

One model call per step (act: one tool call, forced by `tool_choice="any"` or the planned tool);
critique is rule-based (tool errors, repeated calls, success checks, budgets). How `plan` plans
depends on the strategy:
- plan: the model writes the plan, a JSON list of steps (intent + tool) decoded under a grammar that
  admits only the enabled tools; each step is acted on with its tool bound, the results carried
  forward; a failed step, or checks that still fail after the last step, trigger a re-plan from what
  was seen (at most `budgets.max_replans`).
- guided: one tool per goal (the one it names, else the model's pick), so the 135M built-in model
  spends its few tokens on the arguments.
- free: no plan; any tool each step until finish.
State is plain JSON-able data, so the SQLite checkpointer can persist it after every node and
`--resume` continues from there.
"""

from __future__ import annotations

import operator
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from agentkit.agents.checks import run_checks
from agentkit.agents.prompting import (
    act_messages,
    clip,
    openai_messages,
    plan_messages,
    plan_schema,
    render_action,
    step_messages,
    tool_schemas,
)
from agentkit.agents.spec import Budgets, Check
from agentkit.models.messages import to_chat_dicts

FINISH = "finish"


class AgentState(TypedDict, total=False):
    goal_index: int  # the goal being worked (goals are done in order)
    planned_goal: int  # the goal the current plan was made for (-1: none yet)
    planned_tool: str | None  # guided strategy: the one tool this goal needs
    plan: list[dict[str, Any]]  # plan strategy: [{intent, tool}] for the current goal
    plan_step: int  # plan strategy: the plan step being acted on
    replans: int  # plan strategy: plans made after a failure, all goals together
    replan_reason: str | None  # plan strategy: set by critique when the next plan node must re-plan
    step: int  # tool calls made so far
    history: Annotated[list[dict[str, Any]], operator.add]  # {step, goal_index, action, arguments, observation, ok}
    notes: list[str]  # critique notes shown with the next step
    memory: list[str]  # lines from the goal's memory session (earlier runs), shown with every step
    answers: list[str]  # finish answers, one per finished goal
    pending: dict[str, Any] | None  # the action chosen by `act`, executed by `observe`
    outcome: dict[str, Any] | None  # what `observe` saw
    tokens: int
    seconds: float
    status: str | None  # set when the run ends: succeeded, finished, failed, budget_exhausted, loop_detected
    final_answer: str | None
    checks: list[dict[str, Any]]
    record: dict[str, Any] | None  # the last step's trace record (streamed to the caller)


@dataclass
class LoopConfig:
    """Everything the nodes need besides the state; not checkpointed (rebuilt from goal.yaml on resume)."""

    model: BaseChatModel
    tools: list[BaseTool]
    goals: list[str]
    constraints: list[str]
    budgets: Budgets
    workspace: Path
    checks: list[Check] = field(default_factory=list)
    strategy: str = "guided"  # "guided": one planned tool per goal; "free": any tool until finish
    on_record: Callable[[dict[str, Any]], None] = lambda record: None
    # Tool names the model may call; anything else is refused as an observation, never executed.
    enabled: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.enabled = self.enabled or {t.name for t in self.tools}


def _invoke(tool: BaseTool, args: dict[str, Any], timeout_s: float) -> tuple[bool, str, str | None]:
    from agentkit.tools import invoke_tool

    outcome = invoke_tool(tool, args, timeout_s=timeout_s)
    return outcome.ok, outcome.output, outcome.error


def build_graph(config: LoopConfig, checkpointer: Any = None) -> Any:
    from langgraph.graph import END, START, StateGraph

    tools_by_name = {t.name: t for t in config.tools}
    bound_all = config.model.bind_tools(config.tools, tool_choice="any")
    schemas_all = tool_schemas(config.tools)
    schema_plan = plan_schema([t.name for t in config.tools])
    planner = (
        config.model.with_structured_output(schema_plan, method="json_schema", include_raw=True)
        if config.strategy == "plan"
        else None
    )

    def replan_for(state: AgentState, reason: str) -> dict[str, Any]:
        """A re-plan for the next plan node while `budgets.max_replans` allows one; past it the run
        goes on with the current plan and the step's critique note (a failed final check ends it)."""
        return {"replan_reason": reason} if state.get("replans", 0) < config.budgets.max_replans else {}

    def make_plan(state: AgentState) -> dict[str, Any]:
        """Strategy plan: a plan for a new goal, or a re-plan from what was seen after a failure."""
        goal_index = state.get("goal_index", 0)
        reason = state.get("replan_reason")
        if state.get("planned_goal", -1) == goal_index and not reason:
            return {}
        goal = config.goals[goal_index]
        messages = plan_messages(goal, config.constraints, config.tools, state.get("history", []), reason or "")
        started = time.monotonic()
        out = planner.invoke(messages)
        raw, parsed = out.get("raw"), out.get("parsed")
        steps = [{"intent": str(s.get("intent", "")), "tool": s.get("tool")} for s in (parsed or {}).get("steps", [])
                 if isinstance(s, dict) and s.get("tool") in tools_by_name]  # fmt: skip
        if not steps:  # a provider model that did not follow the schema: act with every tool bound
            steps = [{"intent": goal, "tool": None}]
        usage = getattr(raw, "usage_metadata", None) or {}
        tokens = {"input": int(usage.get("input_tokens", 0)), "output": int(usage.get("output_tokens", 0))}
        seconds = time.monotonic() - started
        replans = state.get("replans", 0) + (1 if reason else 0)
        config.on_record({
            "type": "plan", "goal_index": goal_index, "goal": goal, "steps": steps, "replan": replans if reason else 0,
            "reason": reason, "reply": raw.content if isinstance(getattr(raw, "content", None), str) else "",
            # as a local model reads them (the schema's fields described in the system turn), so that
            # `runs export` trains on the prompt the planner decodes from
            "messages": to_chat_dicts(messages, response_schema=schema_plan), "schema": schema_plan, "tokens": tokens,
            "seconds": round(seconds, 3), "after_step": state.get("step", 0),
        })  # fmt: skip
        return {"planned_goal": goal_index, "plan": steps, "plan_step": 0, "replans": replans, "replan_reason": None,
                "notes": [], "tokens": state.get("tokens", 0) + tokens["input"] + tokens["output"],
                "seconds": state.get("seconds", 0.0) + seconds}  # fmt: skip

    def plan(state: AgentState) -> dict[str, Any]:
        """Once per goal (and on a re-plan). Guided: pick the one tool the goal needs — the tool the goal names, else
        the model's choice from the goal alone (earlier results bias a 135M model towards repeating
        the last tool). Free: the goal list is the plan. Plan: `make_plan`."""
        if config.strategy == "plan":
            return make_plan(state)
        goal_index = state.get("goal_index", 0)
        if state.get("planned_goal", -1) == goal_index:
            return {}
        update: dict[str, Any] = {"planned_goal": goal_index, "notes": [], "planned_tool": None}
        if config.strategy == "guided":
            goal = config.goals[goal_index]
            named = named_tools(goal, [t.name for t in config.tools])
            if len(named) == 1:
                update["planned_tool"] = named[0]
            else:
                reply = bound_all.invoke(step_messages({"goal_index": goal_index}, config.goals, config.constraints, free=True))
                calls = getattr(reply, "tool_calls", None) or []
                update["planned_tool"] = calls[0]["name"] if calls and calls[0]["name"] in tools_by_name else None
                usage = getattr(reply, "usage_metadata", None) or {}
                update["tokens"] = state.get("tokens", 0) + int(usage.get("total_tokens", 0))
        return update

    def act(state: AgentState) -> dict[str, Any]:
        started = time.monotonic()
        if config.strategy == "plan":
            steps, current = state.get("plan") or [], state.get("plan_step", 0)
            planned = steps[current]["tool"] if current < len(steps) else None
            messages = act_messages(config.goals[state.get("goal_index", 0)], config.constraints, steps, current,
                                    state.get("history", []), state.get("notes", []))  # fmt: skip
        else:
            messages = step_messages(dict(state), config.goals, config.constraints, free=config.strategy == "free")
            planned = state.get("planned_tool")
        if planned:
            # One bound tool: a shorter prompt, and the model spends its tokens on the arguments.
            bound, schemas = config.model.bind_tools([tools_by_name[planned]], tool_choice=planned), \
                tool_schemas([tools_by_name[planned]])
        else:
            bound, schemas = bound_all, schemas_all
        reply = bound.invoke(messages)
        usage = getattr(reply, "usage_metadata", None) or {}
        tokens = {"input": int(usage.get("input_tokens", 0)), "output": int(usage.get("output_tokens", 0))}
        thought = reply.content if isinstance(reply.content, str) else ""
        calls = list(getattr(reply, "tool_calls", []) or [])
        call = calls[0] if calls else None
        return {
            "pending": {
                "thought": thought.strip(),
                "action": call["name"] if call else None,
                "arguments": dict(call["args"]) if call else {},
                "call_id": (call.get("id") if call else None) or f"call_{uuid.uuid4().hex[:12]}",
                "extra_calls": len(calls) - 1 if calls else 0,
                "messages": openai_messages(messages),
                "tools": schemas,
                "tokens": tokens,
                "model_seconds": time.monotonic() - started,
            }
        }

    def observe(state: AgentState) -> dict[str, Any]:
        pending = state["pending"] or {}
        name, args = pending.get("action"), pending.get("arguments", {})
        started = time.monotonic()
        refused = False
        if name is None:
            ok, output, error = False, "", "no tool call in the reply; reply with exactly one tool call."
        elif name not in config.enabled or name not in tools_by_name:
            # A prompt injection or a model that ignores the bound tools: refuse, never execute.
            refused = True
            ok, output, error = False, "", f"tool {name!r} is not enabled for this goal; use one of: " + ", ".join(sorted(config.enabled))
        else:
            ok, output, error = _invoke(tools_by_name[name], args, config.budgets.tool_timeout_s)
        observation = output if ok else f"error: {error}" + (f"\n{output}" if output else "")
        return {"outcome": {"ok": ok, "observation": observation, "refused": refused,
                            "tool_seconds": time.monotonic() - started}}  # fmt: skip

    def critique(state: AgentState) -> dict[str, Any]:
        pending, outcome = state["pending"] or {}, state["outcome"] or {}
        step = state.get("step", 0) + 1
        goal_index = state.get("goal_index", 0)
        name, args = pending.get("action"), pending.get("arguments", {})
        tokens = state.get("tokens", 0) + pending["tokens"]["input"] + pending["tokens"]["output"]
        seconds = state.get("seconds", 0.0) + pending.get("model_seconds", 0.0) + outcome.get("tool_seconds", 0.0)
        entry = {"step": step, "goal_index": goal_index, "action": name or "(none)", "arguments": args,
                 "observation": outcome["observation"], "ok": outcome["ok"]}  # fmt: skip
        history = [*state.get("history", []), entry]
        update: dict[str, Any] = {"step": step, "history": [entry], "tokens": tokens, "seconds": seconds,
                                  "pending": None, "outcome": None}  # fmt: skip
        notes: list[str] = []
        answers = list(state.get("answers", []))
        status = None
        final_answer = state.get("final_answer")
        checks: list[dict[str, Any]] = list(state.get("checks", []))

        if not outcome["ok"]:
            notes.append(f"the last action failed ({outcome['observation'][:160]}); try a different action.")
        repeats = sum(1 for h in history if h["action"] == entry["action"] and h["arguments"] == args)
        if config.strategy == "plan":
            steps, current = state.get("plan") or [], state.get("plan_step", 0)
            planned_tool = steps[current]["tool"] if current < len(steps) else None
            if outcome["ok"] and name != FINISH and planned_tool is not None:
                current += 1
                update["plan_step"] = current
            # a fallback plan (no tool: the model gave no parseable plan) is done only by finish
            planned_done = outcome["ok"] and name != FINISH and planned_tool is not None and current >= len(steps)
            if not outcome["ok"] and repeats < config.budgets.loop_limit:
                update.update(replan_for(state, f"{render_action(entry['action'], args)} failed: "
                                                f"{clip(outcome['observation'], 200)}"))  # fmt: skip
        else:
            planned_tool = state.get("planned_tool")
            planned_done = outcome["ok"] and name is not None and name == planned_tool
        if (name == FINISH or planned_done) and outcome["ok"]:
            answers.append(str(args.get("answer", outcome["observation"])) if name == FINISH else outcome["observation"])
            final_answer = answers[-1]
            if goal_index + 1 < len(config.goals):
                update["goal_index"] = goal_index + 1
            else:
                results = [r.as_dict() for r in run_checks(config.checks, config.workspace)]
                checks = results
                status = "finished" if not results else ("succeeded" if all(r["passed"] for r in results) else "failed")
                if status == "failed" and config.strategy == "plan":
                    failing = "; ".join(check_hint(c) for c, r in zip(config.checks, results) if not r["passed"])
                    replan = replan_for(state, f"after the last step the goal is not reached: {failing}")
                    if replan:  # the goal again, with a new plan; else the run ends as failed
                        update.update(replan)
                        status = None
        elif repeats >= config.budgets.loop_limit:
            status = "loop_detected"
        elif repeats > 1:
            notes.append(f"you already called {render_action(entry['action'], args)}; use its result.")
        if status is None and config.checks and outcome["ok"] and name != FINISH:
            # Stop as soon as the goal's checks pass: a small model may never call finish.
            results = [r.as_dict() for r in run_checks(config.checks, config.workspace)]
            if all(r["passed"] for r in results):
                status, checks = "succeeded", results
                final_answer = final_answer or outcome["observation"]
        if status is None:
            budgets = config.budgets
            if step >= budgets.max_steps or (budgets.max_tokens and tokens >= budgets.max_tokens) or (
                budgets.max_seconds and seconds >= budgets.max_seconds
            ):
                status = "budget_exhausted"
                checks = [r.as_dict() for r in run_checks(config.checks, config.workspace)]
        record = {
            "type": "step", "step": step, "goal_index": goal_index, "goal": config.goals[goal_index],
            "thought": pending.get("thought", ""), "action": entry["action"], "arguments": args,
            "observation": outcome["observation"], "ok": outcome["ok"], "refused": outcome["refused"],
            "critique": notes, "tokens": pending["tokens"],
            "seconds": round(pending.get("model_seconds", 0.0) + outcome.get("tool_seconds", 0.0), 3),
            "call_id": pending.get("call_id"), "messages": pending.get("messages", []),
            "tools": pending.get("tools", []),
        }  # fmt: skip
        config.on_record(record)
        update.update(notes=notes, answers=answers, status=status, final_answer=final_answer, checks=checks,
                      record=record)  # fmt: skip
        return update

    graph = StateGraph(AgentState)
    graph.add_node("plan", plan)
    graph.add_node("act", act)
    graph.add_node("observe", observe)
    graph.add_node("critique", critique)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "act")
    graph.add_edge("act", "observe")
    graph.add_edge("observe", "critique")
    graph.add_conditional_edges("critique", lambda s: END if s.get("status") else "plan", ["plan", END])
    return graph.compile(checkpointer=checkpointer)


def check_hint(check: Check) -> str:
    """A failing check as the planner may see it: which file, never the expected text (the answer)."""
    from agentkit.agents.spec import FileContainsCheck, FileExistsCheck

    if isinstance(check, FileExistsCheck):
        return f"{check.file_exists} does not exist"
    if isinstance(check, FileContainsCheck):
        return f"{check.file_contains} does not hold the right content"
    return "the goal's command check fails"


def named_tools(goal: str, names: list[str]) -> list[str]:
    """Tools a goal names: `read_file` or "read file" as words ("with the calculator"), or a goal that
    starts with a tool's verb ("Write the result..." -> write_file); several matches name none."""
    words = "".join(c if c.isalnum() else " " for c in goal.lower()).split()
    text = f" {' '.join(words)} "
    named = [n for n in names if n != FINISH and f" {n.replace('_', ' ')} " in text]
    if not named and words:
        named = [n for n in names if n != FINISH and n.split("_")[0] == words[0]]
    return named


def initial_state(memory: list[str] | None = None) -> AgentState:
    return AgentState(memory=list(memory or []), goal_index=0, planned_goal=-1, planned_tool=None, plan=[], plan_step=0,
                      replans=0, replan_reason=None, step=0, history=[], notes=[], answers=[], pending=None,
                      outcome=None, tokens=0, seconds=0.0, status=None, final_answer=None, checks=[],
                      record=None)  # fmt: skip

"""The agent loop as a LangGraph `StateGraph`: plan -> act -> observe -> critique -> (plan | end).

One model call per step (act: one tool call, forced by `tool_choice="any"`); planning happens once
per goal and critique is rule-based (tool errors, repeated calls, success checks, budgets), so the
135M built-in model spends its few tokens on choosing actions. State is plain JSON-able data, so
the SQLite checkpointer can persist it after every node and `--resume` continues from there.
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
from agentkit.agents.prompting import openai_messages, render_action, step_messages, tool_schemas
from agentkit.agents.spec import Budgets, Check

FINISH = "finish"


class AgentState(TypedDict, total=False):
    goal_index: int  # the goal being worked (goals are done in order)
    planned_goal: int  # the goal the current plan was made for (-1: none yet)
    planned_tool: str | None  # guided strategy: the one tool this goal needs
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

    def plan(state: AgentState) -> dict[str, Any]:
        """Once per goal. Guided: pick the one tool the goal needs — the tool the goal names, else
        the model's choice from the goal alone (earlier results bias a 135M model towards repeating
        the last tool). Free-text plans from such a model are noise; the goal list is the plan."""
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
        planned_done = outcome["ok"] and name is not None and name == state.get("planned_tool")
        if (name == FINISH or planned_done) and outcome["ok"]:
            answers.append(str(args.get("answer", outcome["observation"])) if name == FINISH else outcome["observation"])
            final_answer = answers[-1]
            if goal_index + 1 < len(config.goals):
                update["goal_index"] = goal_index + 1
            else:
                results = [r.as_dict() for r in run_checks(config.checks, config.workspace)]
                checks = results
                status = "finished" if not results else ("succeeded" if all(r["passed"] for r in results) else "failed")
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
    return AgentState(memory=list(memory or []), goal_index=0, planned_goal=-1, planned_tool=None, step=0, history=[], notes=[], answers=[], pending=None,
                      outcome=None, tokens=0, seconds=0.0, status=None, final_answer=None, checks=[],
                      record=None)  # fmt: skip

"""Runs as training data. `sft`: every step of a successful run, as the exact messages the model saw
(recorded by the loop from `prompting.step_messages`) + its tool call, with the bound tools under
`tools`; under strategy plan also the plan that worked for each goal (its last one), as the
planning messages + the JSON plan. `dpo`: per goal list, a step of a successful run (chosen) against the same step of a
failed run (rejected)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentkit.agents.agent import SUCCESS
from agentkit.agents.prompting import assistant_call
from agentkit.agents.trace import RunStore

FORMATS = ("sft", "dpo")


def _runs(store: RunStore, kind: str = "step") -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]]:
    for run_id in store.run_ids():
        records = store.records(run_id)
        start = next((r for r in records if r["type"] == "start"), None)
        end = next((r for r in reversed(records) if r["type"] == "end"), None)
        if start is not None:
            yield start, [r for r in records if r["type"] == kind], end


def _reply(step: dict[str, Any]) -> dict[str, Any]:
    return assistant_call(step.get("thought", ""), step["action"], step["arguments"], step.get("call_id") or "call_0")


def _useful(step: dict[str, Any]) -> bool:
    # Only steps worth imitating: the call ran and was not a refused or repeated action.
    return bool(step.get("ok")) and not step.get("refused") and bool(step.get("messages"))


def sft_examples(store: RunStore) -> Iterator[dict[str, Any]]:
    """One example per useful step of a successful run: {messages, tools, run_id, step}."""
    for start, steps, end in _runs(store):
        if end is None or end["status"] not in SUCCESS:
            continue
        for step in steps:
            if _useful(step):
                yield {
                    "messages": [*step["messages"], _reply(step)],
                    "tools": step.get("tools") or start.get("tool_schemas", []),
                    "run_id": start["run_id"],
                    "step": step["step"],
                }


def plan_examples(store: RunStore) -> Iterator[dict[str, Any]]:
    """The plan each goal of a successful run was reached with (its last plan): {messages, tools: []}."""
    for start, plans, end in _runs(store, "plan"):
        if end is None or end["status"] not in SUCCESS:
            continue
        last = {p["goal_index"]: p for p in plans if p.get("messages") and p.get("reply")}
        for plan in last.values():
            yield {
                "messages": [*plan["messages"], {"role": "assistant", "content": plan["reply"]}],
                "tools": [],
                "run_id": start["run_id"],
                "plan": plan["goal_index"],
            }


def dpo_pairs(store: RunStore) -> Iterator[dict[str, Any]]:
    """(chosen, rejected) per goal position: the same goal list, goal index and step within the goal,
    where one run succeeded and another failed; the prompt is the failed run's (what the model saw
    when it went wrong), the chosen reply the successful run's action for that goal."""
    good: dict[tuple[str, int], dict[str, Any]] = {}
    bad: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for start, steps, end in _runs(store):
        if end is None or end["status"] in ("interrupted", "error"):
            continue
        goals_key = json.dumps(start.get("goals", []))
        won = end["status"] in SUCCESS
        for step in steps:
            key = (goals_key, step["goal_index"])
            if won and _useful(step):
                good.setdefault(key, step)
            elif not won and step.get("messages"):
                bad.setdefault(key, []).append(step)
    for key, rejected_steps in bad.items():
        chosen = good.get(key)
        if chosen is None:
            continue
        for rejected in rejected_steps:
            if (rejected["action"], rejected["arguments"]) == (chosen["action"], chosen["arguments"]):
                continue  # the same call is no preference
            yield {
                "prompt": rejected["messages"],
                "chosen": [_reply(chosen)],
                "rejected": [_reply(rejected)],
                "tools": rejected.get("tools", []),
                "goal": rejected.get("goal"),
            }


def export_runs(store: RunStore, fmt: str, output: Path) -> int:
    """Write JSONL (temp file + rename); returns the number of rows."""
    rows = list([*sft_examples(store), *plan_examples(store)] if fmt == "sft" else dpo_pairs(store))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, output)
    return len(rows)

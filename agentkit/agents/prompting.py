"""What the model sees at one step: `step_messages(state, goals, constraints)`. The loop calls it
at inference and `runs export` replays its recorded output, so training and inference cannot drift."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import BaseMessage

STEP_PROMPT = "agent_step@1"
PLAN_PROMPT = "agent_plan@1"
ACT_PROMPT = "agent_act@1"
# A 135M model has a 2k-token window and copies whatever it saw last: show only the last few steps
# (guided: the last one; with three, SmolLM2 wrote the first step's file name into the third step's
# call), each result cut to a few hundred characters (~100 tokens).
HISTORY_STEPS = {"guided": 1, "free": 3}
RESULT_CHARS = 300
# strategy plan: the results later steps need are carried forward, the newest PLAN_RESULTS of them
# (~100 tokens each): with the plan and the tools a step stays under ~1k prompt tokens (measured per
# step by bench/agent_eval.py), inside every built-in's window with room for the reply.
PLAN_RESULTS = 6
MAX_PLAN_STEPS = 6


def render_action(name: str, args: dict[str, Any]) -> str:
    """`calculator(expression="17 + 25")`: the call as the model reads it in later steps."""
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    return f"{name}({inner})"


def clip(text: str, limit: int = RESULT_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 20] + f" ... [{len(text) - limit + 20} more chars]"


def step_variables(state: dict[str, Any], goals: list[str], constraints: list[str], free: bool = False) -> dict[str, Any]:
    index = min(state.get("goal_index", 0), len(goals) - 1)
    shown = state.get("history", [])[-HISTORY_STEPS["free" if free else "guided"] :]
    history = [
        {
            "step": h["step"],
            "goal": goals[min(h["goal_index"], len(goals) - 1)],
            "action": render_action(h["action"], h["arguments"]),
            # The call is shown only when the same goal took several steps, so the model sees
            # what it already tried; otherwise the goal says what was done in fewer tokens.
            "repeat": sum(1 for o in shown if o["goal_index"] == h["goal_index"]) > 1,
            "result": clip(h["observation"]),
        }
        for h in shown
    ]
    return {
        "goal": goals[index],
        "step": state.get("step", 0) + 1,
        "constraints": constraints,
        "history": history,
        "notes": [*state.get("memory", []), *state.get("notes", [])],
        "free": free,
    }


def step_messages(
    state: dict[str, Any], goals: list[str], constraints: list[str], *, free: bool = False, prompt: str = STEP_PROMPT
) -> list[BaseMessage]:
    """The system + user messages for the next action (the tools are bound to the model separately)."""
    from agentkit.prompts import load_prompt

    return load_prompt(prompt).format_messages(**step_variables(state, goals, constraints, free))


def openai_messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat dicts (role/content, assistant tool_calls, tool results)."""
    from langchain_core.messages import convert_to_openai_messages

    return convert_to_openai_messages(messages)  # type: ignore[return-value]


def assistant_call(thought: str, name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    """The assistant turn of one step in OpenAI format: optional text, then exactly one tool call."""
    return {
        "role": "assistant",
        "content": thought,
        "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
        ],
    }  # fmt: skip


def tool_schemas(tools: list[Any]) -> list[dict[str, Any]]:
    """The bound tools in OpenAI format, as LocalChatModel.bind_tools formats them."""
    from agentkit.models.tool_calls import openai_tool

    return [openai_tool(t, i) for i, t in enumerate(tools)]


def plan_schema(tool_names: list[str]) -> dict[str, Any]:
    """The JSON schema a plan is decoded under: only enabled tools can be named, at most
    MAX_PLAN_STEPS steps, a short intent each."""
    return {
        "title": "plan",
        "description": "the steps that reach the goal, each with its intent and the one tool it uses",
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_PLAN_STEPS,
                "items": {
                    "type": "object",
                    "properties": {
                        "intent": {"type": "string", "minLength": 3, "maxLength": 160},
                        "tool": {"type": "string", "enum": list(tool_names)},
                    },
                    "required": ["intent", "tool"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def _done(history: list[dict[str, Any]]) -> tuple[list[dict[str, str]], int]:
    shown = history[-PLAN_RESULTS:]
    return [{"action": render_action(h["action"], h["arguments"]), "result": clip(h["observation"])} for h in shown], \
        len(history) - len(shown)  # fmt: skip


def plan_messages(
    goal: str, constraints: list[str], tools: list[Any], history: list[dict[str, Any]], problem: str = ""
) -> list[BaseMessage]:
    """The planning call: the goal and tools, and on a re-plan what was done and what went wrong."""
    from agentkit.prompts import load_prompt

    done, _ = _done(history) if problem else ([], 0)
    described = [{"name": t.name, "description": " ".join(str(t.description).split())[:200]} for t in tools]
    return load_prompt(PLAN_PROMPT).format_messages(goal=goal, constraints=constraints, tools=described,
                                                    done=done, problem=problem)  # fmt: skip


def act_messages(
    goal: str, constraints: list[str], plan: list[dict[str, Any]], current: int, history: list[dict[str, Any]],
    notes: list[str],
) -> list[BaseMessage]:  # fmt: skip
    """One acting step: the plan (steps before `current` marked done), the results so far, the step."""
    from agentkit.prompts import load_prompt

    results, omitted = _done(history)
    steps = [{"intent": s["intent"], "tool": s["tool"], "done": i < current} for i, s in enumerate(plan)]
    return load_prompt(ACT_PROMPT).format_messages(goal=goal, constraints=constraints, plan=steps, current=current + 1,
                                                   results=results, omitted=omitted, notes=notes)  # fmt: skip

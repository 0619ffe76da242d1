"""`ScriptedChatModel`: a fake chat model that replies with a fixed list of tool calls (and, for
strategy plan, a fixed list of plans), for testing the agent loop's bookkeeping (budgets, loops,
faults, re-plans) without a real model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class ScriptedChatModel(BaseChatModel):
    """Replies with `script[i]` = (tool name, arguments) on the i-th call; the last one repeats.
    Structured output (the planner) returns `plans[j]` on the j-th call, `{"steps": [...]}`.

    `seen` keeps the messages of every call and `seen_plans` those of every planning call, so tests
    can check what the loop showed the model.
    """

    script: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)
    plans: list[dict[str, Any]] = Field(default_factory=list)
    calls: int = 0
    plan_calls: int = 0
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    seen_plans: list[list[BaseMessage]] = Field(default_factory=list)
    plan_schemas: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "agentkit-scripted-fake"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self  # the script decides; tool_choice="any" holds since every reply is a call

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Any:
        import json

        from langchain_core.runnables import RunnableLambda

        self.plan_schemas.append(schema)

        def plan(messages: Any) -> Any:
            self.seen_plans.append(list(messages))
            parsed = self.plans[min(self.plan_calls, len(self.plans) - 1)]
            self.plan_calls += 1
            raw = AIMessage(content=json.dumps(parsed),
                            usage_metadata={"input_tokens": 20, "output_tokens": 8, "total_tokens": 28})  # fmt: skip
            return {"raw": raw, "parsed": parsed, "parsing_error": None} if include_raw else parsed

        return RunnableLambda(plan)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        self.seen.append(list(messages))
        name, args = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        message = AIMessage(
            content="",
            tool_calls=[{"name": name, "args": dict(args), "id": f"call_{self.calls}", "type": "tool_call"}],
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

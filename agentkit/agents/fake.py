"""`ScriptedChatModel`: a fake chat model that replies with a fixed list of tool calls, for testing
the agent loop's bookkeeping (budgets, loops, faults) without a real model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class ScriptedChatModel(BaseChatModel):
    """Replies with `script[i]` = (tool name, arguments) on the i-th call; the last one repeats.

    `seen` keeps the messages of every call, so tests can check what the loop showed the model.
    """

    script: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)
    calls: int = 0
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "agentkit-scripted-fake"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self  # the script decides; tool_choice="any" holds since every reply is a call

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

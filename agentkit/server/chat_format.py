"""OpenAI's chat wire format on one side, LangChain's messages on the other: request messages in,
the reply (`chat.completion`) and its stream (`chat.completion.chunk`) out. Pure functions, no I/O."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from agentkit.server import schemas
from agentkit.server.errors import bad_request

# What the engines report (runtime.GenerationOutput.finish_reason) -> what OpenAI clients know.
# A timeout (ServeSettings.generation_timeout_s) cut the reply short, as a budget does.
_FINISH = {"stop": "stop", "length": "length", "timeout": "length", "cancelled": "length"}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _text(content: schemas.Content | None) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(part.text for part in content)


def to_langchain(messages: list[Any]) -> list[BaseMessage]:
    """Validated request messages as LangChain messages. A tool result gets the name of the call it
    answers (the prompt shows the model which tool spoke); call arguments must be JSON objects."""
    out: list[BaseMessage] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, from earlier assistant turns
    for index, message in enumerate(messages):
        if isinstance(message, schemas.SystemMessage):
            out.append(SystemMessage(_text(message.content)))
        elif isinstance(message, schemas.UserMessage):
            out.append(HumanMessage(_text(message.content)))
        elif isinstance(message, schemas.AssistantMessage):
            calls = []
            for n, call in enumerate(message.tool_calls or []):
                calls.append({"name": call.function.name, "args": _arguments(call.function.arguments, index, n),
                              "id": call.id, "type": "tool_call"})  # fmt: skip
                names[call.id] = call.function.name
            out.append(AIMessage(content=_text(message.content), tool_calls=calls))
        else:
            out.append(ToolMessage(_text(message.content), tool_call_id=message.tool_call_id,
                                   name=names.get(message.tool_call_id)))  # fmt: skip
    return out


def _arguments(text: str, message: int, call: int) -> dict[str, Any]:
    param = f"messages[{message}].tool_calls[{call}].function.arguments"
    try:
        args = json.loads(text or "{}")
    except ValueError as exc:
        raise bad_request(f"Invalid {param}: not JSON ({exc}).", param, code="invalid_value") from None
    if not isinstance(args, dict):
        raise bad_request(f"Invalid {param}: must be a JSON object, got {type(args).__name__}.", param,
                          code="invalid_value")  # fmt: skip
    return args


def tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """A LangChain tool call as OpenAI's: arguments as a JSON string."""
    return {"id": call["id"], "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"], ensure_ascii=False)}}  # fmt: skip


def usage(metadata: dict[str, Any] | None) -> dict[str, Any]:
    metadata = metadata or {}
    prompt, completion = int(metadata.get("input_tokens", 0)), int(metadata.get("output_tokens", 0))
    cached = int((metadata.get("input_token_details") or {}).get("cache_read", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


def finish_reason(engine_reason: str | None, has_calls: bool) -> str:
    return "tool_calls" if has_calls else _FINISH.get(engine_reason or "stop", "stop")


def completion(message: AIMessage, *, model: str, id: str, created: int) -> dict[str, Any]:
    """`chat.completion` for one reply."""
    calls = [tool_call(c) for c in message.tool_calls]
    text = message.content if isinstance(message.content, str) else str(message.content)
    reply: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": finish_reason(message.response_metadata.get("finish_reason"), bool(calls))}],
        "usage": usage(message.usage_metadata),
    }  # fmt: skip


class ChunkWriter:
    """`chat.completion.chunk` bodies for one streamed reply, in OpenAI's order: the role first, then
    content and tool-call deltas, then an empty delta with finish_reason, then (when asked) usage
    alone with no choices."""

    def __init__(self, *, model: str, include_usage: bool) -> None:
        self.id, self.created, self.model = completion_id(), int(time.time()), model
        self.include_usage = include_usage
        self.calls = 0  # tool calls sent so far: each gets the next index
        self.engine_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": choices}  # fmt: skip
        if self.include_usage:
            body["usage"] = None  # OpenAI sends usage: null on every chunk but the last
        return {**body, **extra}

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def start(self) -> dict[str, Any]:
        return self._delta({"role": "assistant", "content": ""})

    def add(self, chunk: AIMessageChunk) -> list[dict[str, Any]]:
        """The bodies one LangChain chunk becomes (none for the final bookkeeping chunk)."""
        if chunk.usage_metadata:
            self.usage = usage(chunk.usage_metadata)
        self.engine_reason = chunk.response_metadata.get("finish_reason") or self.engine_reason
        out = []
        text = chunk.content if isinstance(chunk.content, str) else ""
        if text:
            out.append(self._delta({"content": text}))
        for call in chunk.tool_call_chunks:
            # LocalChatModel sends each call whole: name, id and the full arguments in one chunk.
            delta = {"index": self.calls, "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                     "function": {"name": call.get("name") or "", "arguments": call.get("args") or "{}"}}  # fmt: skip
            self.calls += 1
            out.append(self._delta({"tool_calls": [delta]}))
        return out

    def end(self) -> list[dict[str, Any]]:
        out = [self._delta({}, finish_reason(self.engine_reason, self.calls > 0))]
        if self.include_usage:
            out.append(self._chunk([], usage=self.usage or usage(None)))
        return out

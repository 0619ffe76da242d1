"""Tool calling for local chat models: tool specs, tool_choice, response formats, and the
streaming split of model output into text and `<tool_call>` chunks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool

from agentkit.errors import BadInputError
from agentkit.models.grammar import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from agentkit.models.messages import parse_tool_calls


def call_key(call: dict[str, Any]) -> str:
    return call["name"] + json.dumps(call["args"], sort_keys=True)


def answered_calls(messages: list[BaseMessage]) -> set[str]:
    """Keys of tool calls in the history that already have a ToolMessage answer."""
    answered_ids = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return {
        call_key(c) for m in messages if isinstance(m, AIMessage) for c in m.tool_calls if c.get("id") in answered_ids
    }


def openai_tool(tool: Any, index: int) -> dict[str, Any]:
    """convert_to_openai_tool plus the checks a grammar needs: a name and an object schema."""
    try:
        formatted = convert_to_openai_tool(tool)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadInputError(
            f"Tool {index} cannot be read as a tool ({exc}).",
            fix="pass a @tool function, a BaseTool, a pydantic model or {'name', 'description', 'parameters'}.",
        ) from None
    function = formatted.get("function", {})
    name, params = function.get("name"), function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(name, str) or not name:
        raise BadInputError(f"Tool {index} has no name.", fix="give every tool a non-empty 'name'.")
    if not isinstance(params, dict) or params.get("type", "object") != "object" or not isinstance(
        params.get("properties", {}), dict
    ):
        raise BadInputError(
            f"Tool {name!r} has a malformed JSON schema: 'parameters' must be an object schema "
            f"with a 'properties' mapping, got {str(params)[:80]!r}.",
            fix='use {"type": "object", "properties": {"arg": {"type": "string"}}, "required": ["arg"]}.',
        )
    return formatted


def normalise_tool_choice(choice: Any, tools: list[dict[str, Any]] | None) -> str:
    """Map LangChain's tool_choice spellings to "auto" | "any" | "none" | a tool name."""
    names = [t["function"]["name"] for t in tools or []]
    if choice is None or choice == "auto":
        return "auto"
    if choice in ("any", "required", True):
        result = "any"
    elif choice in ("none", False):
        return "none"
    elif isinstance(choice, dict):
        result = (choice.get("function") or {}).get("name") or choice.get("name") or ""
    elif isinstance(choice, str):
        result = choice
    else:
        result = repr(choice)
    if result != "any" and result not in names:
        raise BadInputError(
            f"tool_choice {result!r} is not one of the bound tools ({', '.join(names) or 'none'}).",
            fix='use "auto", "any", "none" or the name of a bound tool.',
        )
    if not names:
        raise BadInputError("tool_choice needs at least one bound tool.", fix="pass tools to bind_tools.")
    return result


def response_format_schema(fmt: Any) -> tuple[dict[str, Any] | None, bool]:
    """(JSON schema or None, json_mode) from an OpenAI-style response_format."""
    if fmt is None:
        return None, False
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return fmt.get("schema"), True
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("schema", spec), False
    if isinstance(fmt, dict) or isinstance(fmt, type):
        return convert_to_json_schema(fmt), False
    raise BadInputError(
        f"Unsupported response_format {fmt!r}.",
        fix='use {"type": "json_object"} or {"type": "json_schema", "json_schema": {"schema": ...}}.',
    )


def drain_tool_text(pending: str) -> Iterator[ChatGenerationChunk | str]:
    """Turn buffered output into chunks: plain text as content, complete calls as tool chunks.

    Yields a `str` last when something must stay buffered (an open call, or a possible prefix
    of `<tool_call>` at the end).
    """
    while pending:
        start = pending.find(TOOL_CALL_OPEN)
        if start < 0:
            # keep a tail that could still grow into "<tool_call>"
            keep = next((k for k in range(len(TOOL_CALL_OPEN) - 1, 0, -1) if pending.endswith(TOOL_CALL_OPEN[:k])), 0)
            head, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            if head:
                yield ChatGenerationChunk(message=AIMessageChunk(content=head))
            break
        if start > 0:
            yield ChatGenerationChunk(message=AIMessageChunk(content=pending[:start]))
            pending = pending[start:]
        end = pending.find(TOOL_CALL_CLOSE)
        if end < 0:
            break
        block, pending = pending[: end + len(TOOL_CALL_CLOSE)], pending[end + len(TOOL_CALL_CLOSE) :]
        _, calls, invalid = parse_tool_calls(block)
        for call in calls:
            args = json.dumps(call["args"], ensure_ascii=False)
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[{"name": call["name"], "args": args, "id": call["id"], "index": 0}],
                )
            )
        for bad in invalid:
            yield ChatGenerationChunk(message=AIMessageChunk(content="", invalid_tool_calls=[bad]))
    yield pending

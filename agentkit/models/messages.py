"""LangChain messages <-> the chat-template dicts a local model sees, tools included.

Tools are described in the system prompt and called in the Hermes layout (`<tool_call>` JSON),
which `grammar.GrammarEngine` enforces and `parse_tool_calls` reads back.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from agentkit.errors import BadInputError
from agentkit.models.grammar import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

_TOOLS_PROMPT = """# Tools

You may call one of these functions to help with the user's request:
<tools>
{tools}
</tools>

To call a function, reply with its name and arguments as JSON inside <tool_call></tool_call> tags:
<tool_call>
{{"name": "<function-name>", "arguments": {{<arguments as a JSON object>}}}}
</tool_call>
A function's result comes back inside <tool_response></tool_response> tags; use it to answer."""

# Said after tool results: without it a small model copies the <tool_response> block back.
_AFTER_RESULTS = "\nAnswer my question using this result."
_SCHEMA_PROMPT = "Reply with only a JSON object with these fields:\n{fields}"
_JSON_PROMPT = "Reply with only a JSON object."
_CALL_RE = re.compile(re.escape(TOOL_CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(TOOL_CALL_CLOSE), re.S)


def content_text(content: str | list[Any], where: str) -> str:
    """Flatten LangChain content (a string or content blocks) to text; refuse media."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") in ("tool_use", "tool_call", "reasoning"):
            continue  # carried by tool_calls / not shown to the model
        else:
            raise BadInputError(
                f"{where} has a {block.get('type')!r} content block; local models here take text only.",
                fix="send text, or describe the image / file in words.",
            )
    return "".join(parts)


def describe_schema(schema: dict[str, Any]) -> str:
    """Fields as "- name (type, required): description" lines; a tiny model follows these far
    better than a raw JSON schema (which it tends to copy)."""
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return json.dumps(schema, ensure_ascii=False)
    required = set(schema.get("required", []))
    lines = []
    for name, prop in props.items():
        kind = prop.get("type") or "/".join(p.get("type", "?") for p in prop.get("anyOf", [])) or "value"
        flag = "required" if name in required else "optional"
        desc = f": {prop['description']}" if prop.get("description") else ""
        lines.append(f"- {name} ({kind}, {flag}){desc}")
    return "\n".join(lines)


def tools_system_prompt(tools: list[dict[str, Any]]) -> str:
    lines = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    return _TOOLS_PROMPT.format(tools=lines)


def format_call(name: str, args: dict[str, Any]) -> str:
    payload = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{payload}\n{TOOL_CALL_CLOSE}"


def to_chat_dicts(
    messages: list[BaseMessage],
    *,
    tools: list[dict[str, Any]] | None = None,
    response_schema: dict[str, Any] | None = None,
    json_mode: bool = False,
) -> list[dict[str, str]]:
    """Render messages as role/content dicts for `tokenizer.apply_chat_template`.

    Tool results become user turns wrapped in <tool_response> (consecutive ones merged), since
    small chat models were trained on user/assistant/system roles only.
    """
    system_extra = []
    if tools:
        system_extra.append(tools_system_prompt(tools))
    if response_schema is not None:
        system_extra.append(_SCHEMA_PROMPT.format(fields=describe_schema(response_schema)))
    elif json_mode:
        system_extra.append(_JSON_PROMPT)

    out: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        where = f"message {index} ({message.type})"
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": content_text(message.content, where)})
        elif isinstance(message, HumanMessage):
            out.append({"role": "user", "content": content_text(message.content, where)})
        elif isinstance(message, AIMessage):
            text = content_text(message.content, where)
            calls = [format_call(c["name"], c["args"]) for c in message.tool_calls]
            out.append({"role": "assistant", "content": "\n".join(filter(None, [text, *calls]))})
        elif isinstance(message, ToolMessage):
            body = content_text(message.content, where)
            status = " (error)" if message.status == "error" else ""
            block = f"<tool_response>\n{message.name or 'tool'}{status}: {body}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1]["content"].startswith("<tool_response>"):
                head = out[-1]["content"].removesuffix(_AFTER_RESULTS)
                out[-1]["content"] = head + "\n" + block + _AFTER_RESULTS
            else:
                out.append({"role": "user", "content": block + _AFTER_RESULTS})
        elif isinstance(message, ChatMessage):
            out.append({"role": message.role, "content": content_text(message.content, where)})
        else:
            raise BadInputError(
                f"{where}: unsupported message type {type(message).__name__}.",
                fix="use System/Human/AI/Tool messages.",
            )

    if system_extra:
        extra = "\n\n".join(system_extra)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + extra}
        else:
            out.insert(0, {"role": "system", "content": extra})
    return out


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Split model output into (remaining text, tool_calls, invalid_tool_calls)."""
    calls: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for raw in _CALL_RE.findall(text):
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        try:
            payload = json.loads(raw)
            name, args = payload["name"], payload.get("arguments", {})
            if not isinstance(name, str) or not isinstance(args, dict):
                raise TypeError("name must be a string and arguments an object")
            calls.append({"name": name, "args": args, "id": call_id, "type": "tool_call"})
        except (ValueError, KeyError, TypeError) as exc:
            invalid.append(
                {"name": None, "args": raw, "id": call_id, "error": str(exc), "type": "invalid_tool_call"}
            )
    remaining = _CALL_RE.sub("", text).strip() if (calls or invalid) else text
    return remaining, calls, invalid

"""Tool-call conversations (sharegpt function_call / observation turns, openai tool_calls / tool
messages) as the exact role/content dicts `LocalChatModel` renders for the same conversation.

Rows become LangChain messages and go through `agentkit.models.messages.to_chat_dicts` with the
tools normalised by `openai_tool` (what `bind_tools` does), so training and inference share one
renderer: the tools in the system prompt, calls as `<tool_call>` JSON, results as <tool_response>.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # data.py imports this module; the runtime import goes the other way only
    from agentkit.tuning.data import _Row

# Sharegpt speakers beyond the plain chat ones (LLaMA-Factory's names).
SHAREGPT_CALL = "function_call"
SHAREGPT_RESULT = "observation"


def row_tools(row: _Row) -> list[dict[str, Any]]:
    """The row's `tools` column as bound tools: [] when absent or empty.

    Accepts a list or a JSON string of a list; items are OpenAI tools ({"type": "function",
    "function": {...}}) or bare function schemas ({"name", "description", "parameters"}).
    """
    from agentkit.errors import BadInputError
    from agentkit.models.tool_calls import openai_tool

    column, value = row.column("tools"), row.get("tools", False)
    if value is None or value == "":
        return []
    value = row.json_cell(column, value,
                          'write it as a JSON list of function schemas, e.g. [{"name": "add", "parameters": {...}}].')  # fmt: skip
    if not isinstance(value, list):
        row.fail(column, f"must be a list of tool schemas, got {type(value).__name__}",
                 "give a JSON list of function schemas (or [] for none).")
    tools = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            row.fail(f"{column}[{i}]", f"must be an object, got {type(tool).__name__}",
                     'write each tool as {"name": ..., "description": ..., "parameters": {...}}.')
        try:
            tools.append(openai_tool(tool, i))  # the normalisation bind_tools applies at inference
        except BadInputError as exc:
            row.fail(f"{column}[{i}]", str(exc).rstrip("."), exc.fix or "fix the tool schema.")
    return tools


def _call(row: _Row, field: str, raw: object, names: list[str], index: int) -> dict[str, Any]:
    """One {"name", "arguments"} object (arguments as an object or a JSON string) -> a LangChain tool call."""
    raw = row.json_cell(field, raw, 'write the call as {"name": "tool", "arguments": {...}}.')
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        row.fail(field, "must be an object with a string 'name'", 'write {"name": "tool", "arguments": {...}}.')
    name, args = raw["name"], raw.get("arguments", {})
    if isinstance(args, str) and not args.strip():
        args = {}
    args = row.json_cell(f"{field}.arguments", args, "write the arguments as a JSON object.")
    if not isinstance(args, dict):
        row.fail(f"{field}.arguments", f"must be an object, got {type(args).__name__}",
                 "write the arguments as a JSON object of name -> value.")
    if name not in names:
        # The decoding grammar only allows bound tools, so such a call could never be produced.
        row.fail(field, f"calls {name!r}, which is not in the row's tools ({', '.join(names) or 'none'})",
                 "add the tool's schema to the row's `tools`, or drop the row.")
    return {"name": name, "args": args, "id": f"call_{index}", "type": "tool_call"}


def _text(row: _Row, field: str, value: object, *, allow_empty: bool) -> str:
    if value is None and allow_empty:
        return ""
    if not isinstance(value, str):
        row.fail(field, f"must be a string, got {type(value).__name__}",
                 "give each turn plain-text content (multimodal parts are not supported).")
    if not value.strip() and not allow_empty:
        row.fail(field, "is empty", "fill it in, or drop the turn.")
    return value


class _Builder:
    """Appends turns as LangChain messages; merges an assistant's text and its calls into one."""

    def __init__(self, row: _Row, tools: list[dict[str, Any]]) -> None:
        self.row, self.names = row, [t["function"]["name"] for t in tools]
        self.messages: list[Any] = []
        self.pending: dict[str, str] = {}  # call id -> tool name, for results that follow
        self.count = 0

    def system(self, text: str) -> None:
        from langchain_core.messages import SystemMessage

        if text.strip():  # an empty system turn teaches nothing (as for plain chat rows)
            self.messages.append(SystemMessage(text))

    def user(self, text: str) -> None:
        from langchain_core.messages import HumanMessage

        self.messages.append(HumanMessage(text))

    def assistant(self, text: str, calls: list[tuple[str, object]]) -> None:
        from langchain_core.messages import AIMessage

        parsed = []
        for field, raw in calls:
            parsed.append(_call(self.row, field, raw, self.names, self.count))
            self.count += 1
        last = self.messages[-1] if self.messages else None
        if isinstance(last, AIMessage) and not last.tool_calls and parsed and not text:
            # sharegpt writes "gpt: text" then "function_call: {...}" for one reply
            last.tool_calls = parsed
        else:
            self.messages.append(AIMessage(text, tool_calls=parsed))
        self.pending = {c["id"]: c["name"] for c in parsed}  # results answer the latest calls only

    def result(self, field: str, text: str, call_id: str | None = None, name: str | None = None) -> None:
        from langchain_core.messages import ToolMessage

        if not self.pending:
            self.row.fail(field, "is a tool result with no tool call before it",
                          "put the assistant's tool call before its result, or drop the turn.")
        ids = list(self.pending)
        if call_id is not None and call_id not in self.pending:
            self.row.fail(field, f"answers tool_call_id {call_id!r}, which the previous assistant turn "
                          f"did not make (it made {', '.join(ids)})", "fix tool_call_id, or drop the turn.")
        call_id = call_id if call_id is not None else ids[0]
        name = name or self.pending.pop(call_id)
        self.pending.pop(call_id, None)
        self.messages.append(ToolMessage(text, name=name, tool_call_id=call_id))


def sharegpt_messages(row: _Row, turns: list, tools: list[dict[str, Any]], roles: dict[str, str]) -> list[Any]:
    column, build = row.column("conversations"), _Builder(row, tools)
    for i, turn in enumerate(turns):
        field = f"{column}[{i}]"
        if not isinstance(turn, dict):
            row.fail(field, "must be an object", 'write turns as {"from": "human", "value": "..."}.')
        who, value = turn.get("from"), turn.get("value")
        if who == SHAREGPT_CALL:
            raws = value if isinstance(value, list) else [value]  # a list: parallel calls
            build.assistant("", [(f"{field}.value", raw) for raw in raws])
        elif who == SHAREGPT_RESULT:
            build.result(f"{field}.value", _text(row, f"{field}.value", value, allow_empty=True))
        elif not isinstance(who, str) or who not in roles:
            row.fail(f"{field}.from", f"unknown speaker {who!r}",
                     f"use one of {', '.join([*roles, SHAREGPT_CALL, SHAREGPT_RESULT])}.")
        elif roles[who] == "system":
            build.system(_text(row, f"{field}.value", value, allow_empty=True))
        elif roles[who] == "user":
            build.user(_text(row, f"{field}.value", value, allow_empty=False))
        else:
            build.assistant(_text(row, f"{field}.value", value, allow_empty=False), [])
    return build.messages


def openai_messages(row: _Row, turns: list, tools: list[dict[str, Any]]) -> list[Any]:
    column, build = row.column("messages"), _Builder(row, tools)
    for i, turn in enumerate(turns):
        field = f"{column}[{i}]"
        if not isinstance(turn, dict):
            row.fail(field, "must be an object", 'write turns as {"role": "user", "content": "..."}.')
        role, content = turn.get("role"), turn.get("content")
        if role == "assistant":
            calls = [(f"{field}.tool_calls[{j}].function", (c or {}).get("function") if isinstance(c, dict) else c)
                     for j, c in enumerate(turn.get("tool_calls") or [])]
            if turn.get("function_call") is not None:  # the legacy single-call field
                calls.append((f"{field}.function_call", turn["function_call"]))
            text = _text(row, f"{field}.content", content, allow_empty=bool(calls))
            ids = [c.get("id") for c in turn.get("tool_calls") or [] if isinstance(c, dict)]
            build.assistant(text, calls)
            if ids and all(isinstance(x, str) for x in ids) and len(ids) == len(build.messages[-1].tool_calls):
                # keep the row's own ids so tool messages can name the call they answer
                for call, call_id in zip(build.messages[-1].tool_calls, ids):
                    build.pending[call_id] = build.pending.pop(call["id"])
                    call["id"] = call_id
        elif role in ("tool", "function"):
            name = turn.get("name") if isinstance(turn.get("name"), str) else None
            call_id = turn.get("tool_call_id") if isinstance(turn.get("tool_call_id"), str) else None
            build.result(f"{field}.content", _text(row, f"{field}.content", content, allow_empty=True),
                         call_id, name)
        elif role == "system":
            build.system(_text(row, f"{field}.content", content, allow_empty=True))
        elif role == "user":
            build.user(_text(row, f"{field}.content", content, allow_empty=False))
        else:
            row.fail(f"{field}.role", f"unknown role {role!r}", "use one of system, user, assistant, tool.")
    return build.messages


def render(messages: list[Any], tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What the chat template receives at inference for these messages with these tools bound."""
    from agentkit.models.messages import to_chat_dicts

    return to_chat_dicts(messages, tools=tools or None)

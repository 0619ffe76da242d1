"""Prompt rendering and tool-call parsing: pure logic, no model."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from agentkit.errors import BadInputError
from agentkit.models.messages import format_call, parse_tool_calls, to_chat_dicts
from agentkit.models.runtime import GenerationParams, cut_at_stop
from agentkit.models.tool_calls import (
    answered_calls,
    call_key,
    drain_tool_text,
    normalise_tool_choice,
    openai_tool,
)

TOOL = {"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}  # fmt: skip


def test_tools_go_into_the_system_prompt_and_calls_round_trip() -> None:
    messages = [
        SystemMessage("Be brief."),
        HumanMessage("1+2?"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("3", name="add", tool_call_id="c1"),
        ToolMessage("oops", name="add", tool_call_id="c2", status="error"),
    ]
    chat = to_chat_dicts(messages, tools=[TOOL])
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[0]["content"].startswith("Be brief.") and '"name": "add"' in chat[0]["content"]
    assert chat[2]["content"] == format_call("add", {"a": 1, "b": 2})
    assert chat[3]["content"].count("<tool_response>") == 2 and "add (error): oops" in chat[3]["content"]


def test_schema_prompt_lists_fields() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string", "description": "the x"}}, "required": ["x"]}
    chat = to_chat_dicts([HumanMessage("hi")], response_schema=schema)
    assert chat[0]["role"] == "system" and "- x (string, required): the x" in chat[0]["content"]


def test_media_blocks_are_refused() -> None:
    message = HumanMessage(content=[{"type": "image", "url": "http://127.0.0.1/x.png"}])
    with pytest.raises(BadInputError, match="text only"):
        to_chat_dicts([message])


def test_parse_tool_calls_valid_invalid_and_text() -> None:
    text = 'Sure. <tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call><tool_call>{bad</tool_call>'
    remaining, calls, invalid = parse_tool_calls(text)
    assert remaining == "Sure."
    assert calls[0]["name"] == "add" and calls[0]["args"] == {"a": 1} and calls[0]["id"].startswith("call_")
    assert len(invalid) == 1 and invalid[0]["args"] == "{bad"
    assert parse_tool_calls("plain text") == ("plain text", [], [])


def test_stream_drain_holds_partial_openers_and_emits_calls() -> None:
    items = list(drain_tool_text("Hello <tool_"))
    assert items[0].message.content == "Hello " and items[-1] == "<tool_"
    items = list(drain_tool_text('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'))
    chunk = items[0].message.tool_call_chunks[0]
    assert chunk["name"] == "add" and json.loads(chunk["args"]) == {"a": 1} and items[-1] == ""


def test_tool_choice_spellings() -> None:
    assert normalise_tool_choice(None, [TOOL]) == "auto"
    assert normalise_tool_choice("required", [TOOL]) == "any"
    assert normalise_tool_choice({"type": "function", "function": {"name": "add"}}, [TOOL]) == "add"
    with pytest.raises(BadInputError, match="not one of the bound tools"):
        normalise_tool_choice("sub", [TOOL])


@pytest.mark.parametrize(
    "tool",
    [
        {"name": "f", "description": "d", "parameters": {"type": "array", "items": {}}},
        {"name": "f", "description": "d", "parameters": {"type": "object", "properties": ["a"]}},
        {"name": "", "description": "d", "parameters": {"type": "object", "properties": {}}},
    ],
)
def test_malformed_tool_schema_is_refused(tool: dict) -> None:
    with pytest.raises(BadInputError):
        openai_tool(tool, 0)


def test_generation_params_validate() -> None:
    with pytest.raises(BadInputError, match="max_new_tokens must be > 0"):
        GenerationParams(max_new_tokens=0)
    with pytest.raises(BadInputError, match="top_p"):
        GenerationParams(top_p=0)
    assert cut_at_stop("hello you there", ["you", "there"]) == ("hello ", True)
    assert cut_at_stop("hello", ["x"]) == ("hello", False)


def test_answered_calls_are_those_with_a_tool_message() -> None:
    done = {"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}
    pending = {"name": "add", "args": {"a": 5, "b": 5}, "id": "c2", "type": "tool_call"}
    history = [HumanMessage("1+2?"), AIMessage("", tool_calls=[done, pending]), ToolMessage("3", tool_call_id="c1")]
    assert answered_calls(history) == {call_key(done)}
    assert call_key({"name": "add", "args": {"b": 2, "a": 1}}) == call_key(done)  # key order is irrelevant

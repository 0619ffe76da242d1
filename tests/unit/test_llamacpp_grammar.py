"""The llama.cpp engine's grammars and the `engine` field, without loading a model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentkit.errors import BadInputError
from agentkit.models.engines import Engine, resolve_engine
from agentkit.models.llamacpp_grammar import LarkGrammars, forced_tokens
from agentkit.models.provider import ModelSpec, load_chat_model


class _WordTokenizer:
    """One token per whitespace-separated word: enough to size budgets."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, Any]:
        return {"input_ids": list(range(len(text.split())))}


def _tool(name: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": "", "parameters": params}}


GRAMMARS = LarkGrammars(_WordTokenizer(), end_ids=[2, 0])
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "tags"]}  # fmt: skip


def _json_args(grammar: str) -> list[dict[str, Any]]:
    return [json.loads(line.split("%json ", 1)[1]) for line in grammar.splitlines() if "%json " in line]


def test_forced_calls_alternate_over_the_allowed_tools_in_the_hermes_layout() -> None:
    tools = [_tool("plus", PERSON), _tool("echo", {"type": "object", "properties": {}})]
    any_ = GRAMMARS.tool_calls(tools, "any")
    assert any_.must_finish and "start: call0 | call1" in any_.text
    assert '"<tool_call>\\n{\\"name\\": \\"plus\\", \\"arguments\\": "' in any_.text
    named = GRAMMARS.tool_calls(tools, "echo")
    assert "start: call0\n" in named.text and "plus" not in named.text
    args = _json_args(any_.text)[0]
    # strict objects and at most one whitespace char between JSON tokens, as xgrammar does on the
    # transformers engine (max_whitespace_cnt=1): held to `"key": "`, SmolLM2 closed strings at once
    assert args["additionalProperties"] is False
    assert args["x-guidance"] == {"whitespace_flexible": True, "whitespace_pattern": "[ \\n]?"}
    # a response schema stays compact, as json.dumps writes it
    layout = _json_args(GRAMMARS.json_schema(PERSON).text)[0]["x-guidance"]
    assert layout == {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def test_auto_and_none_allow_text_that_never_writes_a_tool_tag_and_end_on_the_eos_ids() -> None:
    auto = GRAMMARS.tool_calls([_tool("add", PERSON)], "auto")
    assert "head[lazy]" in auto.text and "~/(?s:.*)<tool(?s:.*)/" in auto.text and "<[0,2]>" in auto.text
    assert not auto.must_finish
    none = GRAMMARS.tool_calls([_tool("add", PERSON)], "none")
    assert "call" not in none.text and "<[0,2]>" in none.text


def test_a_redo_caps_strings_and_arrays_to_fit_the_budget() -> None:
    constraint = GRAMMARS.json_schema(PERSON)
    assert "maxLength" not in constraint.text
    loose, strict = (_json_args(text)[0] for text in constraint.retry_grammars(64))
    assert loose["properties"]["tags"]["maxItems"] == strict["properties"]["tags"]["maxItems"] == 3
    # 1 name + 3 tags = 4 strings share what the shortest reply leaves of 64 tokens
    assert 1 <= strict["properties"]["name"]["maxLength"] <= 64 // 4 < loose["properties"]["name"]["maxLength"]
    assert strict["properties"]["tags"]["items"]["maxLength"] == strict["properties"]["name"]["maxLength"]


def test_budget_check_and_finished_replies() -> None:
    constraint = GRAMMARS.json_schema(PERSON)
    with pytest.raises(BadInputError, match="too small for the shortest reply"):
        constraint.check_budget(2)
    constraint.check_budget(64)
    assert constraint.finished('{"name": "a", "tags": []}') and not constraint.finished('{"name": "a')
    call = GRAMMARS.tool_calls([_tool("add", PERSON)], "add")
    assert call.finished('<tool_call>\n{"name": "add", "arguments": {}}\n</tool_call>') and not call.finished("<tool_call>")


def test_unknown_schema_types_fail_with_the_fix() -> None:
    with pytest.raises(BadInputError, match="grammar"):
        GRAMMARS.tool_calls([_tool("f", {"type": "object", "properties": {"x": {"type": "nonsense"}}})], "f")
    GRAMMARS.json_schema({"type": "object", "properties": {"type": {"type": "string"}}})  # a field named "type"


def test_forced_tokens_grammar() -> None:
    assert forced_tokens([5, 17]) == "%llguidance {}\nstart: <[5]> <[17]>\n"


def test_engine_is_a_field_of_the_model_spec_and_forcing_transformers_needs_no_registry() -> None:
    assert load_chat_model({"model": "smollm2-135m-instruct", "engine": "llamacpp"}).engine is Engine.LLAMACPP
    with pytest.raises(ValueError, match="engine is only valid with provider 'agentkit'"):
        ModelSpec(provider="openai", model="gpt-4o-mini", engine="llamacpp")
    with pytest.raises(ValueError, match="auto"):
        ModelSpec(engine="gpu")
    assert resolve_engine("transformers", "any-id", None, registry=None) is Engine.TRANSFORMERS  # type: ignore[arg-type]

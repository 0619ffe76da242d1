"""Constrained decoding on llama.cpp: JSON schemas, JSON mode and tool calls as llguidance (Lark)
grammars, in the same tool-call layout and with the same token-budget check as grammar.py.

xllamacpp's llama.cpp is built with llguidance (its own `json_schema_to_grammar` returns
`%llguidance` text), so a request's `grammar` is Lark with inline `%json` schemas; llama.cpp
compiles it per request (~1 ms for a tool set), so nothing is cached here but token counts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentkit.errors import BadInputError
from agentkit.models.grammar import CALL_OPENER, TOOL_CALL_CLOSE, budget_reserve
from agentkit.models.schema_minimum import minimal_instance

_CALL_END = "}\n" + TOOL_CALL_CLOSE
# Compact JSON with one space after ',' and ':' -- what json.dumps writes and what the prompt
# shows (a response schema; xgrammar's any_whitespace=False on the transformers engine).
_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# Tool-call arguments: at most one space or newline between JSON tokens, as grammar.py's
# max_whitespace_cnt=1. Forcing the compact layout there broke SmolLM2's calls: after
# `"expression":` it ranks ` {"` first and, held to ` "`, closed the string at once; with a newline
# allowed it writes the expression (free whitespace would let it pad to max_new_tokens).
_CALL_LAYOUT = {"whitespace_flexible": True, "whitespace_pattern": r"[ \n]?"}
# Text that may not appear in a text reply: blocked "<tool_response>", a small model writes
# "<tool_response_result>" or "<tool-response>" instead (grammar.py, _TAG_STEM). The `&`/`~` regex
# operators are llguidance's; a literal "<tool_call>" therefore always opens a checked call.
_SAFE_TEXT = r"SAFE: /(?s:.*)/ & ~/(?s:.*)<tool(?s:.*)/"
# Arrays get at most this many items when an over-budget reply is redone (see `bounded`).
_RETRY_ITEMS = 3
_JSON_TYPES = {"string", "integer", "number", "boolean", "object", "array", "null"}


def call_begin(name: str) -> str:
    return f'{CALL_OPENER}{name}", "arguments": '


@dataclass(frozen=True)
class LarkConstraint:
    """A grammar for one request and the size of the shortest reply it accepts, in tokens.

    `must_finish`: a reply cut by the token budget does not parse (JSON, a forced tool call), so
    the engine redoes it with `bounded(max_len)` -- the same grammar with strings capped at
    `max_len` characters and arrays at 3 items -- the llama.cpp stand-in for grammar.py's wrap-up
    bias, which needs a logits hook llama.cpp does not offer.
    """

    text: str
    min_tokens: int
    prefix_tokens: int = 0
    must_finish: bool = False
    bounded: Callable[[int], str] | None = None
    string_slots: int = 1  # strings the reply can hold with arrays at 3 items, to split a budget
    closing: str | None = None  # the text a complete reply ends with; None: it is one JSON value

    def unfinished(self, text: str) -> bool:
        """Whether a reply the budget cut stops short of what this grammar requires."""
        return self.must_finish and not self.finished(text)

    def finished(self, text: str) -> bool:
        """Whether a reply is complete (one the budget cut may have ended on its last token)."""
        if self.closing is not None:
            return text.rstrip().endswith(self.closing)
        try:
            json.loads(text)
        except ValueError:
            return False
        return True

    def check_budget(self, max_new_tokens: int) -> None:
        reserve = budget_reserve(self.min_tokens)
        if self.must_finish and self.prefix_tokens + reserve > max_new_tokens:
            raise BadInputError(
                f"max_new_tokens={max_new_tokens} is too small for the shortest reply that matches this "
                f"schema / tool call ({self.prefix_tokens + self.min_tokens} tokens written "
                f"canonically, up to {self.prefix_tokens + reserve} as a model spells them).",
                fix=f"raise max_new_tokens to at least {self.prefix_tokens + reserve} (more gives better answers).",
            )

    def retry_grammars(self, max_new_tokens: int) -> list[str]:
        """Bounded grammars for redoing a reply the budget cut, loosest first.

        What the shortest reply leaves of the budget is split between the reply's strings: first
        at ~3 characters a token (SmolLM2 writes ~4 in English), then at 1, which always fits.
        """
        if self.bounded is None:
            return []
        spare = max(1, max_new_tokens - self.prefix_tokens - budget_reserve(self.min_tokens))
        slots = max(1, self.string_slots)
        return [self.bounded(max(1, 3 * spare // slots)), self.bounded(max(1, spare // slots))]


class LarkGrammars:
    """Builds llguidance grammars for one tokenizer (token counts) and its end-of-turn token ids."""

    def __init__(self, tokenizer: Any, end_ids: list[int]) -> None:
        self._tokenizer = tokenizer
        # Text grammars end with an explicit end-of-turn token: llguidance in llama.cpp allows EOS
        # only where the grammar can go no further, so `/(?s:.*)/` alone never lets the reply end.
        self._end = "<[" + ",".join(str(i) for i in sorted(set(end_ids))) + "]>"

    def _count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def json_schema(self, schema: dict[str, Any]) -> LarkConstraint:
        _check_schema(schema)
        min_tokens = self._count(json.dumps(minimal_instance(schema), separators=(", ", ": ")))

        def build(max_len: int | None) -> str:
            return f"%llguidance {{}}\nstart: %json {_json_arg(schema, max_len)}\n"

        return LarkConstraint(build(None), min_tokens, 0, True, build, _string_slots(schema))

    def any_json(self) -> LarkConstraint:
        # JSON mode means an object, as OpenAI's does (and grammar.py).
        return self.json_schema({"type": "object"})

    def tool_calls(self, tools: list[dict[str, Any]], choice: str) -> LarkConstraint:
        """`choice`: "auto" (text or calls), "any" (one call to any tool), "none" (text) or a name."""
        functions = [t["function"] for t in tools]
        for fn in functions:
            _check_schema(fn.get("parameters") or {})
        if choice == "none":
            return LarkConstraint(f"%llguidance {{}}\nstart: SAFE {self._end}\n{_SAFE_TEXT}\n", 0)
        if choice == "auto":
            # Text and calls in any order; `head` is lazy, so it ends at the first call opener,
            # and SAFE text cannot contain one: every "<tool" the model writes opens a checked call.
            bodies = " | ".join(f"body{i}" for i in range(len(functions)))
            rules = [
                "%llguidance {}",
                f"start: call* SAFE {self._end}",
                f"call: head ({bodies})",
                f"head[lazy]: SAFE {_lit(CALL_OPENER)}",
            ]
            for i, fn in enumerate(functions):
                rest = call_begin(fn["name"]).removeprefix(CALL_OPENER)  # NAME", "arguments":
                rules.append(f"body{i}: {_lit(rest)} args{i} {_lit(_CALL_END)}")
                rules.append(f"args{i}: %json {_json_arg(_params(fn), None, _CALL_LAYOUT)}")
            return LarkConstraint("\n".join([*rules, _SAFE_TEXT]) + "\n", 0)
        chosen = functions if choice == "any" else [f for f in functions if f["name"] == choice]

        def build(max_len: int | None) -> str:
            calls = " | ".join(f"call{i}" for i in range(len(chosen)))
            rules = ["%llguidance {}", f"start: {calls}"]
            for i, fn in enumerate(chosen):
                rules.append(f"call{i}: {_lit(call_begin(fn['name']))} args{i} {_lit(_CALL_END)}")
                rules.append(f"args{i}: %json {_json_arg(_params(fn), max_len, _CALL_LAYOUT)}")
            return "\n".join(rules) + "\n"

        def shortest(fn: dict[str, Any]) -> tuple[int, int]:
            args = json.dumps(minimal_instance(_params(fn)), separators=(", ", ": "))
            return self._count(args + _CALL_END), self._count(call_begin(fn["name"]))

        rest, prefix = max(shortest(f) for f in chosen)
        slots = max(_string_slots(_params(f)) for f in chosen)
        return LarkConstraint(build(None), rest, prefix, True, build, slots, TOOL_CALL_CLOSE)


def forced_tokens(ids: list[int]) -> str:
    """A grammar that admits exactly these token ids, in order (for scoring a continuation)."""
    return "%llguidance {}\nstart: " + " ".join(f"<[{i}]>" for i in ids) + "\n"


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _params(fn: dict[str, Any]) -> dict[str, Any]:
    return fn.get("parameters") or {"type": "object", "properties": {}}


def _check_schema(node: Any) -> None:
    """Refuse unknown types here with the fix; llguidance would reject them at request time with
    a bare 400 ("failed to parse grammar")."""
    if isinstance(node, list):
        for item in node:
            _check_schema(item)
        return
    if not isinstance(node, dict):
        return
    kinds = node.get("type")
    for kind in kinds if isinstance(kinds, list) else [] if kinds is None else [kinds]:
        if kind not in _JSON_TYPES:
            raise BadInputError(
                f"Cannot build a grammar from this JSON schema: unknown type {kind!r}.",
                fix="check the tool / response schema against JSON Schema (types, required, properties).",
            )
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            _check_schema(list(value.values()))
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "additionalProperties", "not"):
            _check_schema(value)


def _json_arg(schema: dict[str, Any], max_len: int | None, layout: dict[str, Any] | None = None) -> str:
    """The `%json` argument: strict objects, the layout (compact by default), and caps for a bounded redo."""
    prepared = _strict(copy.deepcopy(schema), max_len)
    prepared["x-guidance"] = layout or _LAYOUT
    return json.dumps(prepared, ensure_ascii=False)


def _strict(node: Any, max_len: int | None) -> Any:
    """No properties beyond those listed (xgrammar's default on the transformers engine, so both
    engines accept the same replies), plus maxLength / maxItems when `max_len` is given."""
    if isinstance(node, list):
        return [_strict(n, max_len) for n in node]
    if not isinstance(node, dict):
        return node
    for key, value in list(node.items()):
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            node[key] = {k: _strict(v, max_len) for k, v in value.items()}
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "additionalProperties", "not"):
            node[key] = _strict(value, max_len)
    kinds = node.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if max_len is not None:
        if "string" in kinds and "maxLength" not in node and "enum" not in node and "const" not in node:
            node["maxLength"] = max(int(node.get("minLength", 0)), max_len)
        if "array" in kinds and "maxItems" not in node:
            node["maxItems"] = max(int(node.get("minItems", 0)), _RETRY_ITEMS)
    return node


def _string_slots(schema: Any, defs: dict[str, Any] | None = None, depth: int = 0) -> int:
    """How many strings a reply to `schema` can hold with arrays at `_RETRY_ITEMS` items."""
    if not isinstance(schema, dict) or depth > 16:
        return 0
    defs = defs if defs is not None else {**schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return _string_slots(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, depth + 1)
    options = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    if options:
        return max(_string_slots(o, defs, depth + 1) for o in options)
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    count = 1 if "string" in kinds else 0
    count += sum(_string_slots(p, defs, depth + 1) for p in (schema.get("properties") or {}).values())
    if "array" in kinds or "items" in schema:
        count += _RETRY_ITEMS * _string_slots(schema.get("items", {}), defs, depth + 1)
    return count

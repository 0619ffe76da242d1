"""Constrained decoding with xgrammar: JSON schemas, JSON mode and tool calls as grammars.

One `GrammarEngine` per tokenizer; compiled grammars are cached by their JSON text, so a tool set
bound once compiles once. Engine chosen by measurement (bench/chat_overhead.py).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from agentkit.models.schema_minimum import minimal_instance

# Tool calls use the Hermes / Qwen layout, which xgrammar's structural tags describe exactly:
#   <tool_call>\n{"name": "NAME", "arguments": {...}}\n</tool_call>
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
# Text replies may not contain this stem: blocked "<tool_response>", the model wrote
# "<tool_response_result>", then "<tool-response>" instead.
_TAG_STEM = "<tool"
CALL_OPENER = TOOL_CALL_OPEN + '\n{"name": "'
_CALL_BEGIN = CALL_OPENER + '{name}", "arguments": '
_CALL_END = "}\n" + TOOL_CALL_CLOSE
# A 135M model left free to emit whitespace inside JSON can pad until max_new_tokens runs out;
# one space or newline between tokens keeps the output readable and the run short.
_MAX_WS = 1
# Tokens kept beyond the shortest valid completion: closing the string or number in progress.
_SLACK = 4


@dataclass(frozen=True)
class Constraint:
    """A compiled grammar and the size of the shortest reply it accepts, in tokens.

    `prefix_tokens` is text the grammar fixes before any free choice (a tool call's begin tag);
    `min_tokens` is the shortest valid rest after it.
    """

    compiled: Any
    min_tokens: int
    prefix_tokens: int = 0


def budget_reserve(min_tokens: int) -> int:
    """Tokens to keep for closing a constrained reply.

    The shortest valid completion from scratch bounds what is left to write from any point.
    A model spells grammar-forced text in more tokens than the canonical tokenisation (it may
    pick `"` then `name` where the tokenizer would merge them) and writes numbers longer than
    "0": ~1.2x on SmolLM2, so 1.3x, plus slack for closing the value in progress.
    """
    return -(-13 * min_tokens // 10) + _SLACK


class GrammarEngine:
    """Compiles and caches grammars for one tokenizer."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int] | None = None) -> None:
        import xgrammar as xgr

        stop_ids = stop_ids or ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else None)
        self._info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids
        )
        self._compiler = xgr.GrammarCompiler(self._info, max_threads=2)
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._closers: Any = None
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _cached(self, key: str, build: Any) -> Any:
        with self._lock:
            if key not in self._cache:
                try:
                    self._cache[key] = build()
                except (RuntimeError, ValueError) as exc:  # xgrammar's schema errors
                    from agentkit.errors import BadInputError

                    raise BadInputError(
                        f"Cannot build a grammar from this JSON schema: {str(exc).splitlines()[0][:200]}",
                        fix="check the tool / response schema against JSON Schema (types, required, properties).",
                    ) from None
            return self._cache[key]

    def _count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def json_schema(self, schema: dict[str, Any]) -> Constraint:
        text = json.dumps(schema)  # not sort_keys: property order is the order the model writes
        return self._cached(
            "schema:" + text,
            lambda: Constraint(
                self._compiler.compile_json_schema(text, any_whitespace=False),
                self._count(json.dumps(minimal_instance(schema), separators=(", ", ": "))),
            ),
        )

    def any_json(self) -> Constraint:
        # The builtin JSON grammar allows any value; JSON mode means an object, as OpenAI's does.
        return self.json_schema({"type": "object"})

    def tool_calls(self, tools: list[dict[str, Any]], choice: str) -> Constraint:
        """`choice`: "auto" (text or calls), "any" (one call to any tool), "none" (text) or a name."""
        from xgrammar.structural_tag import (
            AnyTextFormat,
            JSONSchemaFormat,
            OrFormat,
            StructuralTag,
            TagFormat,
            TriggeredTagsFormat,
        )

        def tag(fn: dict[str, Any]) -> TagFormat:
            params = fn.get("parameters") or {"type": "object", "properties": {}}
            return TagFormat(
                begin=_CALL_BEGIN.replace("{name}", fn["name"]),
                content=JSONSchemaFormat(json_schema=params, max_whitespace_cnt=_MAX_WS),
                end=_CALL_END,
            )

        functions = [t["function"] for t in tools]

        def shortest(fn: dict[str, Any]) -> tuple[int, int]:
            args = json.dumps(minimal_instance(fn.get("parameters") or {}), separators=(", ", ": "))
            return self._count(args + _CALL_END), self._count(_CALL_BEGIN.replace("{name}", fn["name"]))

        if choice == "none":
            # Text only; a small model that has read tool results otherwise copies the tags back.
            fmt: Any = AnyTextFormat(excludes=[_TAG_STEM])
        elif choice == "auto":
            fmt = TriggeredTagsFormat(
                triggers=[TOOL_CALL_OPEN], tags=[tag(f) for f in functions], excludes=[TOOL_RESPONSE_OPEN]
            )
        elif choice == "any":
            tags = [tag(f) for f in functions]
            fmt = tags[0] if len(tags) == 1 else OrFormat(elements=tags)
        else:
            fmt = tag(next(f for f in functions if f["name"] == choice))
        structural = StructuralTag(format=fmt)
        # "auto" and "none" may end as plain text at any point, so they need no reserve.
        candidates = functions if choice == "any" else [f for f in functions if f["name"] == choice]
        rest, prefix = (0, 0) if choice in ("auto", "none") else max(shortest(f) for f in candidates)
        key = "tools:" + choice + ":" + json.dumps(functions)
        return self._cached(
            key, lambda: Constraint(self._compiler.compile_structural_tag(structural), rest, prefix)
        )

    def logits_processors(self, constraint: Constraint, prompt_len: int, max_new_tokens: int) -> list[Any]:
        """Fresh processors per generate() call (xgrammar's matchers are single-use)."""
        from xgrammar.contrib.hf import LogitsProcessor

        reserve = budget_reserve(constraint.min_tokens)
        if constraint.prefix_tokens + reserve > max_new_tokens:
            from agentkit.errors import BadInputError

            raise BadInputError(
                f"max_new_tokens={max_new_tokens} is too small for the shortest reply that matches this "
                f"schema / tool call ({constraint.prefix_tokens + constraint.min_tokens} tokens written "
                f"canonically, up to {constraint.prefix_tokens + reserve} as a model spells them).",
                fix=f"raise max_new_tokens to at least {constraint.prefix_tokens + reserve} (more gives better answers).",
            )
        return [LogitsProcessor(constraint.compiled), self._wrap_up(prompt_len, max_new_tokens, reserve)]

    def _wrap_up(self, prompt_len: int, max_new_tokens: int, reserve: int) -> Any:
        """Near the token budget, prefer tokens that close strings, objects and arrays.

        Without this a 135M model that loops inside a JSON string ("and it was a cat, and it
        was a cat, ...") hits max_new_tokens mid-string and the reply does not parse. The
        grammar mask has already set disallowed tokens to -inf, so a bonus only reorders the
        allowed ones: the reply still matches the schema, it just ends sooner.
        """
        import torch

        if self._closers is None:
            vocab = self._tokenizer.convert_ids_to_tokens(list(range(self._vocab_size)))
            texts = [self._tokenizer.convert_tokens_to_string([t]) if t else "" for t in vocab]
            # Quote / brace / bracket tokens get the big bonus; a comma gets half, so it wins after
            # a number (where no quote is allowed) but never beats a quote inside a string.
            bonus = [
                1e4 if set(t.strip()) <= set('"}]') else 5e3 if set(t.strip()) <= set('"}],') else 0.0
                for t in (text if text.strip() else "x" for text in texts)
            ]
            self._closers = torch.tensor(bonus, dtype=torch.float32)
        closers = self._closers

        def process(input_ids: Any, scores: Any) -> Any:
            generated = input_ids.shape[1] - prompt_len
            if max_new_tokens - generated > reserve:
                return scores
            return scores + closers[: scores.shape[-1]].to(scores.device)

        return process

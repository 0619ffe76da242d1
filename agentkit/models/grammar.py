"""Constrained decoding with xgrammar: JSON schemas, JSON mode and tool calls as grammars.

One `GrammarEngine` per tokenizer; compiled grammars are cached by their JSON text, so a tool set
bound once compiles once. Engine chosen by measurement (bench/chat_overhead.py).
"""

from __future__ import annotations

import json
import threading
from typing import Any

# Tool calls use the Hermes / Qwen layout, which xgrammar's structural tags describe exactly:
#   <tool_call>\n{"name": "NAME", "arguments": {...}}\n</tool_call>
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
CALL_OPENER = TOOL_CALL_OPEN + '\n{"name": "'
_CALL_BEGIN = CALL_OPENER + '{name}", "arguments": '
_CALL_END = "}\n" + TOOL_CALL_CLOSE
# A 135M model left free to emit whitespace inside JSON can pad until max_new_tokens runs out;
# one space or newline between tokens keeps the output readable and the run short.
_MAX_WS = 1


class GrammarEngine:
    """Compiles and caches grammars for one tokenizer."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        stop_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else None
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

    def json_schema(self, schema: dict[str, Any]) -> Any:
        text = json.dumps(schema)  # not sort_keys: property order is the order the model writes
        return self._cached(
            "schema:" + text,
            lambda: self._compiler.compile_json_schema(
                text, any_whitespace=False
            ),
        )

    def any_json(self) -> Any:
        # The builtin JSON grammar allows any value; JSON mode means an object, as OpenAI's does.
        return self.json_schema({"type": "object"})

    def tool_calls(self, tools: list[dict[str, Any]], choice: str) -> Any:
        """`choice`: "auto" (text or calls), "any" (exactly one call to any tool) or a tool name."""
        from xgrammar.structural_tag import (
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
        if choice == "auto":
            fmt: Any = TriggeredTagsFormat(triggers=[TOOL_CALL_OPEN], tags=[tag(f) for f in functions])
        elif choice == "any":
            tags = [tag(f) for f in functions]
            fmt = tags[0] if len(tags) == 1 else OrFormat(elements=tags)
        else:
            fmt = tag(next(f for f in functions if f["name"] == choice))
        structural = StructuralTag(format=fmt)
        key = "tools:" + choice + ":" + json.dumps(functions)
        return self._cached(key, lambda: self._compiler.compile_structural_tag(structural))

    def logits_processors(self, compiled: Any, prompt_len: int, max_new_tokens: int) -> list[Any]:
        """Fresh processors per generate() call (xgrammar's matchers are single-use)."""
        from xgrammar.contrib.hf import LogitsProcessor

        return [LogitsProcessor(compiled), self._wrap_up(prompt_len, max_new_tokens)]

    def _wrap_up(self, prompt_len: int, max_new_tokens: int) -> Any:
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
            mask = [bool(t.strip()) and set(t.strip()) <= set('"}]') for t in texts]
            self._closers = torch.tensor(mask, dtype=torch.float32) * 1e4
        closers = self._closers
        # Reserve: enough tokens to close a few nested levels and write the tool-call end tag.
        reserve = min(32, max(4, max_new_tokens // 4))

        def process(input_ids: Any, scores: Any) -> Any:
            generated = input_ids.shape[1] - prompt_len
            if max_new_tokens - generated > reserve:
                return scores
            return scores + closers[: scores.shape[-1]].to(scores.device)

        return process

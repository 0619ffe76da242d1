"""`LocalChatModel`: a langchain-core chat model over a registry model, with constrained tools.

`_generate` / `_stream` are the two hooks; invoke, batch, async and callbacks come from
`BaseChatModel`. Tool calls and structured output are grammars, so they always parse. The runtime
(transformers or llama.cpp) is picked by `engines.resolve_engine`; both offer one surface.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import BadInputError
from agentkit.models.engines import ChatEngine, Engine, load_engine
from agentkit.models.grammar import CALL_OPENER
from agentkit.models.messages import parse_tool_calls, to_chat_dicts
from agentkit.models.runtime import GenerationOutput, GenerationParams
from agentkit.models.tool_calls import (
    answered_calls,
    call_key,
    drain_tool_text,
    normalise_tool_choice,
    openai_tool,
    response_format_schema,
)
from agentkit.registry import Registry


@dataclass
class _Call:
    """One prepared request: the loaded base, prompt ids and everything generation needs."""

    loaded: ChatEngine
    prompt: list[int]
    params: GenerationParams
    grammar: Any
    adapter: str | None
    with_tools: bool
    # "auto" resolved to a call: a reply that only repeats answered calls is redone as text.
    auto_call: bool = False
    answered: set[str] = field(default_factory=set)

    def repeats_answered(self, calls: list[dict[str, Any]]) -> bool:
        return self.auto_call and bool(calls) and all(call_key(c) in self.answered for c in calls)


# Per-call options accepted by invoke/stream/bind; anything else is a typo worth reporting.
_CALL_OPTIONS = {
    "tools", "tool_choice", "response_format", "adapter", "model",
    "temperature", "top_p", "repetition_penalty", "max_new_tokens", "max_tokens", "seed", "timeout", "cancel",
}  # fmt: skip


class LocalChatModel(BaseChatModel):
    """A chat model from the agentkit registry, run in this process with transformers or llama.cpp.

    Example:
        ```python
        from agentkit.models import LocalChatModel

        llm = LocalChatModel()  # the built-in smollm2-135m-instruct
        llm.bind_tools([calculator], tool_choice="any").invoke("What is 12 * 7?")
        ```
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model: str = Field(default="smollm2-135m-instruct", description="registry id of a causal LM")
    adapter: str | None = Field(default=None, description="registry id of an adapter of `model`")
    temperature: float = Field(default=0.0, ge=0, description="0 means greedy decoding")
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(
        default=1.0, gt=0, description="> 1 discourages the loops greedy decoding falls into; 1 = off"
    )
    max_new_tokens: int = Field(default=256, gt=0, alias="max_tokens", description="per reply")
    seed: int | None = Field(default=None, description="torch seed for sampling, per call")
    stop: list[str] | None = Field(default=None, description="stop sequences, cut from the text")
    timeout: float | None = Field(default=None, gt=0, description="seconds per generation")
    max_retries: int = Field(default=0, ge=0, description="accepted for parity; local runs don't retry")
    streaming: bool = Field(default=False, description="invoke() streams internally (callbacks)")
    home: str | None = Field(default=None, description="registry root; default $AGENTKIT_HOME")
    engine: Engine = Field(
        default=Engine.AUTO,
        description=(
            "auto: llama.cpp for an entry with a GGUF and no adapter, else transformers (prompt-learning "
            "adapters need it); or force transformers / llamacpp"
        ),
    )
    n_threads: int | None = Field(
        default=None, gt=0, description="CPU threads for generation; None = 1, measured (models/threads.py)"
    )
    n_ctx: int | None = Field(
        default=None, gt=0, description="llama.cpp context in tokens; None = the model's, at most 8192"
    )
    tool_call_threshold: float | None = Field(
        default=-12.0,
        description=(
            'tool_choice="auto": call a tool when log P(<tool_call> opener | prompt) is at least '
            "this (calibrated on SmolLM2-135M, see README); None leaves the choice to free decoding"
        ),
    )

    @property
    def _llm_type(self) -> str:
        return "agentkit-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Everything that changes the reply: LangChain's LLM cache keys on this.
        return self.model_dump(exclude={"streaming", "max_retries", "callbacks", "cache", "verbose",
                                        "tags", "metadata", "callback_manager", "rate_limiter",
                                        "custom_get_token_ids", "disable_streaming"})  # fmt: skip

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "ls_provider": "agentkit",
            "ls_model_name": kwargs.get("model") or self.model,
            "ls_model_type": "chat",
            "ls_temperature": kwargs.get("temperature", self.temperature),
            "ls_max_tokens": kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens)),
        }
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ---- request assembly -----------------------------------------------------------------
    def _registry(self) -> Registry:
        return Registry(self.home)  # None: $AGENTKIT_HOME

    def load_runtime(self, model: str | None = None, adapter: str | None = None) -> ChatEngine:
        """The loaded runtime that serves `model` (default: this model's) with `adapter`."""
        registry = self._registry()
        # an alias (`agent-default`) runs what it points at now: a later promote is seen by the next call
        model, adapter = registry.resolve_chat(model or self.model, adapter)
        return load_engine(self.engine, model, adapter, registry, threads=self.n_threads, n_ctx=self.n_ctx)

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Call:
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise BadInputError(
                f"Unknown option(s) for LocalChatModel: {', '.join(sorted(unknown))}.",
                fix=f"use only {', '.join(sorted(_CALL_OPTIONS))}.",
            )
        params = GenerationParams(
            max_new_tokens=kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens)),
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
            repetition_penalty=kwargs.get("repetition_penalty", self.repetition_penalty),
            seed=kwargs.get("seed", self.seed),
            stop=list(stop if stop is not None else (self.stop or [])),
            timeout=kwargs.get("timeout", self.timeout),
            threads=self.n_threads,
            cancel=kwargs.get("cancel"),
        )
        tools = kwargs.get("tools") or None
        choice = normalise_tool_choice(kwargs.get("tool_choice"), tools)
        schema, json_mode = response_format_schema(kwargs.get("response_format"))
        adapter = kwargs.get("adapter", self.adapter)
        loaded = self.load_runtime(kwargs.get("model"), adapter)
        chat = to_chat_dicts(
            messages,
            tools=tools if choice != "none" else None,
            response_schema=schema,
            json_mode=json_mode,
        )
        grammar = None
        if schema is not None:
            grammar = loaded.grammar.json_schema(schema)
        elif json_mode:
            grammar = loaded.grammar.any_json()
        call = _Call(loaded, loaded.encode_chat(chat), params, grammar, adapter, with_tools=bool(tools and choice != "none"))
        if tools and choice == "none" and grammar is None:
            call.grammar = loaded.grammar.tool_calls(tools, "none")
        if call.with_tools:
            decided = self._decide_tool(loaded, call.prompt, tools, choice, adapter)
            call.grammar = loaded.grammar.tool_calls(tools, decided)
            call.auto_call = choice == "auto" and decided != "auto"
            call.answered = answered_calls(messages) if call.auto_call else set()
        return call

    def _decide_tool(
        self,
        loaded: ChatEngine,
        prompt: list[int],
        tools: list[dict[str, Any]],
        choice: str,
        adapter: str | None,
    ) -> str:
        """Resolve "auto" and "any" to a decision the grammar can enforce, by the model's own scores.

        A 135M model rarely opens a tool call on its own even when it ranks one highly, and
        greedy decoding commits to a tool on the first token of its name. Scoring the opener and
        each full name in one batched pass fixes both: "auto" calls when log P(opener) reaches
        `tool_call_threshold`, and the call goes to the name with the highest log-probability.
        """
        if choice not in ("auto", "any") or (choice == "auto" and self.tool_call_threshold is None):
            return choice
        names = [t["function"]["name"] for t in tools]
        if choice == "any" and len(names) == 1:
            return names[0]
        texts = [CALL_OPENER] + [f'{CALL_OPENER}{name}"' for name in names]
        scores = loaded.continuation_logprobs(prompt, texts, adapter=adapter)
        if choice == "auto" and scores[0] < self.tool_call_threshold:
            return "auto"  # free text; the grammar still allows a call if the model opens one
        return names[max(range(len(names)), key=lambda i: scores[i + 1])]

    # ---- the two hooks --------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            from langchain_core.language_models.chat_models import generate_from_stream

            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        call = self._prepare(messages, stop, kwargs)
        out = call.loaded.generate(call.prompt, call.params, grammar=call.grammar, adapter=call.adapter)
        text, calls, invalid = parse_tool_calls(out.text) if call.with_tools else (out.text, [], [])
        if call.repeats_answered(calls):
            # A small model that has just read a tool's result tends to call it again with the
            # same arguments; that can only loop, so answer in text instead.
            return self._generate(messages, stop, run_manager, **{**kwargs, "tool_choice": "none"})
        message = AIMessage(
            content=text,
            tool_calls=calls,
            invalid_tool_calls=invalid,
            usage_metadata=_usage(out),
            response_metadata=self._metadata(call.loaded, out, call.adapter),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        if call.auto_call:
            # The reply is one tool call (the grammar allows nothing else), so nothing streams
            # before it closes anyway: buffer it, and redo as text if it repeats an answered call.
            chunks = list(self._stream_call(call, run_manager))
            calls = [c for ch in chunks for c in ch.message.tool_call_chunks]
            parsed = [{"name": c["name"], "args": json.loads(c["args"] or "{}")} for c in calls if c.get("name")]
            if call.repeats_answered(parsed):
                yield from self._stream(messages, stop, run_manager, **{**kwargs, "tool_choice": "none"})
            else:
                yield from chunks
            return
        yield from self._stream_call(call, run_manager)

    def _stream_call(self, call: _Call, run_manager: CallbackManagerForLLMRun | None) -> Iterator[ChatGenerationChunk]:
        pending = ""  # text that may belong to a <tool_call> block, held until it is decided
        call_index = 0
        for item in call.loaded.stream(call.prompt, call.params, grammar=call.grammar, adapter=call.adapter):
            if isinstance(item, GenerationOutput):
                final = item
                break
            if not call.with_tools:
                if run_manager:
                    run_manager.on_llm_new_token(item)
                yield ChatGenerationChunk(message=AIMessageChunk(content=item))
                continue
            pending += item
            for chunk in drain_tool_text(pending):
                if isinstance(chunk, str):
                    pending = chunk
                    break
                if chunk.message.tool_call_chunks:
                    chunk.message.tool_call_chunks[0]["index"] = call_index
                    call_index += 1
                elif run_manager:
                    run_manager.on_llm_new_token(str(chunk.message.content))
                yield chunk
        if pending:
            text, _, _ = parse_tool_calls(pending)
            if text:
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=_usage(final),
                response_metadata=self._metadata(call.loaded, final, call.adapter),
                chunk_position="last",
            )
        )

    def _metadata(self, loaded: ChatEngine, out: GenerationOutput, adapter: str | None) -> dict[str, Any]:
        return {
            "model_name": loaded.model_id,
            "model_provider": "agentkit",
            "engine": loaded.engine.value,
            "adapter": adapter,
            "finish_reason": out.finish_reason,
        }

    # ---- tools and structured output ------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; `tool_choice` is None/"auto", "any"/"required", "none" or a tool name."""
        formatted = [openai_tool(t, i) for i, t in enumerate(tools)]
        normalise_tool_choice(tool_choice, formatted)  # fail at bind time, not at invoke time
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Structured output by constrained decoding: the reply always parses against `schema`."""
        from agentkit.models.structured import structured_runnable

        return structured_runnable(self, schema, method=method, include_raw=include_raw, strict=strict, **kwargs)


def _usage(out: GenerationOutput) -> UsageMetadata:
    usage = UsageMetadata(
        input_tokens=out.input_tokens,
        output_tokens=out.output_tokens,
        total_tokens=out.input_tokens + out.output_tokens,
    )
    if out.cached_tokens:  # prompt tokens served from the KV cache of an earlier call
        usage["input_token_details"] = {"cache_read": out.cached_tokens}
    return usage

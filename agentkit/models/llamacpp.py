"""`LlamaCppModel`: a registry model's GGUF run by llama.cpp (xllamacpp: llama-server inside this
process), with runtime.LoadedModel's surface -- prompts, grammars, log-probs, generate / stream.

Requests go to the server's raw completion endpoint as token ids that the entry's own chat
template produced (runtime.encode_chat), so both engines see the same prompt, token for token; the
chat endpoint would re-render it with llama.cpp's template engine and parse tool calls itself.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import AgentkitError, BadInputError, MissingPackageError
from agentkit.models.engines import Engine, gguf_path, lora_gguf_path
from agentkit.models.llamacpp_grammar import LarkConstraint, LarkGrammars, forced_tokens
from agentkit.models.runtime import GenerationOutput, GenerationParams, chat_base_card, encode_chat
from agentkit.models.threads import generation_threads
from agentkit.registry import Registry

_MODELS: dict[tuple[Any, ...], LlamaCppModel] = {}
_LOCK = threading.Lock()
# Context when the caller sets none: the model's trained length, capped. KV cache is allocated up
# front: SmolLM2 30 layers x 2 (K, V) x 3 heads x 64 dims x 2 B = 23 KB/token -> 188 MB at 8192.
_MAX_DEFAULT_CTX = 8192
_INSTALL = "pip install 'xllamacpp>=2026.10,<2027'"


@dataclass
class _Reply:
    text: str
    finish: str | None
    usage: dict[str, Any]


class LlamaCppModel:
    """A GGUF base under llama.cpp, ready to generate; get one with `LlamaCppModel.get`.

    LoRA adapters are switched per request on the one loaded base: the server holds every GGUF
    LoRA used so far at scale 0, and each request's `lora` list turns on its own (a switch costs
    ~6 ms, bench/lora_swap.py). The first request for a new adapter converts it once
    (engines.lora_gguf_path) and restarts the server with the longer list (~0.7 s for SmolLM2).
    """

    engine = Engine.LLAMACPP

    def __init__(
        self, model_id: str, gguf: Path, server: Any, tokenizer: Any, end_ids: list[int], n_ctx: int,
        *, registry: Registry | None = None, threads: int = 1,
    ) -> None:  # fmt: skip
        self.model_id = model_id
        self.gguf = gguf
        self.server = server
        self.tokenizer = tokenizer
        self.end_ids = end_ids
        self.n_ctx = n_ctx
        self.registry = registry or Registry()
        self.threads = threads
        self._loras: dict[str, Path] = {}  # adapter id -> its GGUF LoRA, in the server's LoRA order
        self._server_lock = threading.Lock()
        self._grammar: LarkGrammars | None = None

    @classmethod
    def get(
        cls,
        model_id: str,
        registry: Registry | None = None,
        *,
        threads: int | None = None,
        n_ctx: int | None = None,
    ) -> LlamaCppModel:
        """The process-wide instance for `model_id`; one llama.cpp server per (GGUF, threads, n_ctx)."""
        registry = registry or Registry()
        card = chat_base_card(registry, model_id)
        gguf = gguf_path(registry, card)
        if gguf is None:
            raise BadInputError(
                f"{model_id!r} has no GGUF file, which the llama.cpp engine runs.",
                fix="use engine: transformers, or import the model from a .gguf file.",
            )
        threads = generation_threads(threads)
        folder = registry.path(model_id)
        ctx = n_ctx or min(_trained_ctx(folder), _MAX_DEFAULT_CTX)
        key = (registry.load_key(card), str(gguf), threads, ctx)
        with _LOCK:
            if key not in _MODELS:
                server = start_server(gguf, threads, ctx)
                tokenizer, end_ids = _tokenizer(folder)
                _MODELS[key] = cls(model_id, gguf, server, tokenizer, end_ids, ctx, registry=registry, threads=threads)
            return _MODELS[key]

    # ---- adapters ------------------------------------------------------------------------------
    def _serving(self, adapter: str | None) -> tuple[Any, dict[str, Any]]:
        """The server to send a request to and the request's `lora` field for `adapter`."""
        with self._server_lock:
            if adapter is not None and adapter not in self._loras:
                path = lora_gguf_path(self.registry, adapter, self.model_id, strict=True)
                assert path is not None  # strict: raises instead
                self.server = start_server(self.gguf, self.threads, self.n_ctx, loras=[*self._loras.values(), path])
                self._loras[adapter] = path
            server, names = self.server, list(self._loras)
        if not names:
            return server, {}
        # The whole list on every request: an adapter left out keeps the scale the last request gave it.
        return server, {"lora": [{"id": i, "scale": 1.0 if name == adapter else 0.0} for i, name in enumerate(names)]}

    # ---- prompts and grammars ---------------------------------------------------------------
    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return encode_chat(self.tokenizer, self.model_id, messages)

    @property
    def grammar(self) -> LarkGrammars:
        if self._grammar is None:
            self._grammar = LarkGrammars(self.tokenizer, self.end_ids)
        return self._grammar

    def continuation_logprobs(
        self, prompt_ids: list[int], texts: list[str], adapter: str | None = None
    ) -> list[float]:
        """log P(text | prompt) for each text: its canonical tokens forced by a grammar, each one's
        log-prob read from the unconstrained distribution (`post_sampling_probs: false`)."""
        server, lora = self._serving(adapter)
        scores = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            body = {"max_tokens": len(ids), "temperature": 0, "n_probs": 1, "post_sampling_probs": False,
                    "grammar": forced_tokens(ids), **lora}  # fmt: skip
            reply = self._once(server, prompt_ids, body)
            content = reply["choices"][0]["logprobs"]["content"][: len(ids)]
            if [t["id"] for t in content] != ids:
                raise AgentkitError(f"llama.cpp did not follow the forced tokens of {text!r}.")
            scores.append(sum(t["logprob"] for t in content))
        return scores

    # ---- generation ---------------------------------------------------------------------------
    def generate(
        self, prompt_ids: list[int], params: GenerationParams, *, grammar: LarkConstraint | None = None,
        adapter: str | None = None,
    ) -> GenerationOutput:  # fmt: skip
        if grammar is not None:
            grammar.check_budget(params.max_new_tokens)
        served = self._serving(adapter)
        deadline = time.monotonic() + params.timeout if params.timeout else None
        out = self._complete(served, prompt_ids, params, grammar.text if grammar else None, deadline)
        for bounded in grammar.retry_grammars(params.max_new_tokens) if grammar is not None else []:
            if out.finish_reason != "length" or not grammar.unfinished(out.text):  # type: ignore[union-attr]
                break
            # Cut mid-JSON (a 135M model repeating an array item or looping inside a string):
            # redo with strings and arrays short enough to close within the budget.
            out = self._complete(served, prompt_ids, params, bounded, deadline)
        return out

    def stream(
        self, prompt_ids: list[int], params: GenerationParams, *, grammar: LarkConstraint | None = None,
        adapter: str | None = None,
    ) -> Iterator[str | GenerationOutput]:  # fmt: skip
        """Yield text deltas as tokens arrive, then one GenerationOutput with the totals.

        llama.cpp holds back text that may start a stop sequence. A reply that must close (JSON, a
        forced tool call) comes in one piece at the end, since an over-budget one is redone.
        """
        if grammar is not None and grammar.must_finish:
            out = self.generate(prompt_ids, params, grammar=grammar, adapter=adapter)
            if out.text:
                yield out.text
            yield out
            return
        served = self._serving(adapter)
        items: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()
        deadline = time.monotonic() + params.timeout if params.timeout else None

        def run() -> None:
            try:
                items.put(self._complete(served, prompt_ids, params, grammar.text if grammar else None, deadline,
                                         on_text=items.put, cancel=cancel))  # fmt: skip
            except BaseException as exc:  # re-raised in the consumer's thread
                items.put(exc)

        worker = threading.Thread(target=run, name=f"agentkit-llamacpp-{self.model_id}", daemon=True)
        worker.start()
        try:
            while True:
                item = items.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, GenerationOutput):
                    return
        finally:
            cancel.set()  # an abandoned stream stops the server at its next token

    # ---- the server calls -----------------------------------------------------------------------
    def _body(self, params: GenerationParams, grammar: str | None) -> dict[str, Any]:
        sample = params.temperature > 0
        body: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            # The transformers engine samples with temperature and top_p only; llama.cpp would
            # add top_k=40 and min_p=0.05 by default.
            "top_p": params.top_p if sample else 1.0,
            "top_k": 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            # transformers' repetition penalty covers every earlier token, prompt included.
            "repeat_penalty": params.repetition_penalty,
            "repeat_last_n": self.n_ctx,
            "stop": [s for s in params.stop if s],
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if grammar is not None:
            body["grammar"] = grammar
        return body

    def _complete(
        self,
        served: tuple[Any, dict[str, Any]],
        prompt_ids: list[int],
        params: GenerationParams,
        grammar: str | None,
        deadline: float | None,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationOutput:
        """One completion. Streamed when something may stop it early (a timeout, a consumer that
        leaves): the callback's True return is how llama.cpp is told to stop. Otherwise in one
        piece, which spares a JSON chunk and a Python call per token."""
        server, lora = served
        if on_text is None and deadline is None and cancel is None and params.cancel is None:
            whole = self._once(server, prompt_ids, {**self._body(params, grammar), **lora})
            choice = whole["choices"][0]
            usage = whole.get("usage") or {}
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            return GenerationOutput(choice["text"], len(prompt_ids), int(usage.get("completion_tokens") or 0),
                                    choice.get("finish_reason") or "stop", cached_tokens=cached)  # fmt: skip
        parts: list[str] = []
        reply = _Reply("", None, {})
        errors: list[dict[str, Any]] = []
        stopped_early = False

        def callback(chunk: dict[str, Any]) -> bool:
            nonlocal stopped_early
            if "choices" not in chunk:
                errors.append(chunk.get("error", chunk))
                return True
            for choice in chunk["choices"]:
                if choice.get("text"):
                    parts.append(choice["text"])
                    if on_text is not None:
                        on_text(choice["text"])
                reply.finish = choice.get("finish_reason") or reply.finish
            reply.usage = chunk.get("usage") or reply.usage
            late = deadline is not None and time.monotonic() > deadline
            left = any(event is not None and event.is_set() for event in (cancel, params.cancel))
            if late or left:
                stopped_early = reply.finish is None
                return True
            return False

        body = {**self._body(params, grammar), **lora, "prompt": prompt_ids, "cache_prompt": True, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        server.handle_completions(body, callback)
        if errors:
            raise self._error(errors[0], prompt_ids)
        text = "".join(parts)
        # A stopped stream ends before the usage chunk: count the tokens of what arrived.
        n_out = reply.usage.get("completion_tokens") or len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        timed_out = stopped_early and deadline is not None and time.monotonic() > deadline
        finish = "timeout" if timed_out else reply.finish
        if stopped_early and not timed_out and params.cancel is not None and params.cancel.is_set():
            finish = "cancelled"
        cached = int((reply.usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        return GenerationOutput(text, len(prompt_ids), int(n_out), finish or "stop", cached_tokens=cached)

    def _once(self, server: Any, prompt_ids: list[int], body: dict[str, Any]) -> dict[str, Any]:
        if len(prompt_ids) >= self.n_ctx:
            raise self._error({"message": "exceeds the available context size"}, prompt_ids)
        reply = server.handle_completions({**body, "prompt": prompt_ids, "cache_prompt": True})
        if "choices" not in reply:
            raise self._error(reply.get("error", reply), prompt_ids)
        return reply

    def _error(self, error: dict[str, Any], prompt_ids: list[int]) -> AgentkitError:
        message = str(error.get("message", error))
        if "context" in message and ("exceed" in message or "size" in message):
            return BadInputError(
                f"The prompt ({len(prompt_ids)} tokens) does not fit the llama.cpp context ({self.n_ctx} tokens).",
                fix="pass a larger n_ctx to LocalChatModel (KV memory grows with it), or shorten the history.",
            )
        if "grammar" in message:
            return BadInputError(
                f"Cannot build a grammar from this JSON schema: llama.cpp says {message!r}.",
                fix="check the tool / response schema against JSON Schema (types, required, properties).",
            )
        return AgentkitError(f"llama.cpp refused the request for {self.model_id!r}: {message}")


def start_server(gguf: Path, threads: int, n_ctx: int, *, loras: Sequence[Path] = (), slots: int = 1) -> Any:
    """An in-process llama-server on `gguf`, set up as the engine needs it; `loras` (GGUF LoRA files)
    are loaded at scale 0, off until a request's `lora` list names them by position."""
    # Waiting OpenMP threads sleep instead of spinning (see threads.py); read once, when the
    # OpenMP runtime loads, so it only helps when torch has not loaded it already.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import xllamacpp
    except ImportError:
        raise MissingPackageError("The llama.cpp engine needs the xllamacpp package.", fix=_INSTALL) from None

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = n_ctx * slots
    # One slot: requests queue, and the slot's KV cache keeps the last prompt, so the next agent
    # step (same system prompt, tools and history, plus a few messages) pays only for new tokens.
    params.n_parallel = slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # Same prompt, same reply, whatever ran before: flash attention makes a token's logits the same
    # whether it is evaluated alone (prefix cached) or inside a batch (fresh prompt); without it
    # SmolLM2's greedy replies changed with the cache state. The host-RAM prompt cache (default
    # 8 GiB) is off for the same reason: a reply after a restore from it differed from a fresh one.
    params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    params.cache_ram_mib = 0
    params.warmup = False  # a warm-up decode costs a load ~0.1 s and changes no result
    params.verbosity = -1  # otherwise every request logs timings to stderr
    # The server also listens on 127.0.0.1 (a random port) for HTTP; calls from this process skip
    # HTTP and the key, so a key nobody else knows closes that port to other local users.
    params.api_keys = [secrets.token_urlsafe(32)]
    if loras:
        adapters = []
        for path in loras:
            info = xllamacpp.CommonAdapterLoraInfo()
            info.path, info.scale = str(path), 0.0
            adapters.append(info)
        params.lora_adapters = adapters
        params.lora_init_without_apply = True
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise AgentkitError(
            f"llama.cpp could not load {gguf} ({exc}).",
            fix="check the file (`agentkit models import` re-validates it), or use engine: transformers.",
        ) from None


def _tokenizer(folder: Path) -> tuple[Any, list[int]]:
    """The entry's tokenizer (same ids as its GGUF: the entry was converted from it) and the ids
    that end a turn: the tokenizer's EOS plus any the generation config lists, as runtime.py."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    configured: Any = None
    config = folder / "generation_config.json"
    if config.is_file():
        configured = json.loads(config.read_text(encoding="utf-8")).get("eos_token_id")
    configured = configured if isinstance(configured, list) else [configured]
    return tokenizer, sorted({i for i in [tokenizer.eos_token_id, *configured] if i is not None})


def _trained_ctx(folder: Path) -> int:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _MAX_DEFAULT_CTX
    return int(config.get("max_position_embeddings") or _MAX_DEFAULT_CTX)

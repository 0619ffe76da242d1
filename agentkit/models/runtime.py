"""Loaded models, one per base per process, and the generation loop shared by every caller.

`LoadedModel` owns a base model, its tokenizer, a grammar engine and a lock. Adapters are the
seam the tuning submodule fills: `adapter=` is resolved per call on the one loaded base.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import BadInputError
from agentkit.models.adapters import Adapter, AdapterSwitch
from agentkit.models.engines import Engine
from agentkit.models.threads import torch_threads
from agentkit.registry import EntryKind, ModelCard, ModelTask, Registry

_CACHE: dict[tuple[str, str, tuple[str, ...]], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


@dataclass
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    timeout: float | None = None
    threads: int | None = None  # CPU threads; None = threads.DEFAULT_THREADS (measured there)
    # Set from another thread to stop at the next token (finish_reason "cancelled"): the server sets it
    # when the client of a whole (not streamed) reply disconnects.
    cancel: threading.Event | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise BadInputError(
                f"max_new_tokens must be > 0, got {self.max_new_tokens}.",
                fix="pass max_new_tokens=1 or more (e.g. 256).",
            )
        if self.temperature < 0:
            raise BadInputError(f"temperature must be >= 0, got {self.temperature}.", fix="use 0 for greedy.")
        if self.repetition_penalty <= 0:
            raise BadInputError(
                f"repetition_penalty must be > 0, got {self.repetition_penalty}.", fix="use 1.0 to disable."
            )
        if not 0 < self.top_p <= 1:
            raise BadInputError(f"top_p must be in (0, 1], got {self.top_p}.", fix="use 1.0 to disable.")


@dataclass
class GenerationOutput:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" (EOS or a stop sequence) | "length" | "timeout" | "cancelled"
    cached_tokens: int = 0  # prompt tokens whose KV was reused from an earlier call (llama.cpp)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut `text` before the earliest stop sequence; True when one was found."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class _TokenQueue:
    """A transformers streamer that hands generated token ids to another thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first sends the prompt ids
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(None)


def chat_base_card(registry: Registry, model_id: str) -> ModelCard:
    """The card of `model_id`, refused unless it is a base causal LM (every engine loads only those)."""
    card = registry.card(model_id)
    if card.kind is EntryKind.ADAPTER:
        raise BadInputError(
            f"{model_id!r} is an adapter of {card.base!r}, not a base model.",
            fix=f"use model={card.base!r}, adapter={model_id!r}.",
        )
    if card.task is not ModelTask.CAUSAL_LM:
        raise BadInputError(
            f"{model_id!r} is a {card.task.value} model, not a chat model.",
            fix="pick a causal_lm entry from `agentkit models list`.",
        )
    return card


def encode_chat(tokenizer: Any, model_id: str, messages: list[dict[str, str]]) -> list[int]:
    """Prompt ids from the entry's own chat template; every engine renders prompts here."""
    if not tokenizer.chat_template:
        raise BadInputError(
            f"{model_id!r} has no chat template.",
            fix="import a chat/instruct model, or set chat_template in its tokenizer_config.json.",
        )
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


class LoadedModel:
    """A causal LM from the registry, ready to generate; get one with `LoadedModel.get`."""

    engine = Engine.TRANSFORMERS

    def __init__(self, registry: Registry, model_id: str, model: Any, tokenizer: Any) -> None:
        self.registry = registry
        self.model_id = model_id
        self.model = model
        self.tokenizer = tokenizer
        # Serialises generation: adapter switching and the global torch RNG (seed) are shared.
        self.lock = threading.Lock()
        self._grammar: Any = None
        self._switch = AdapterSwitch(model)  # PEFT wrappers around `model`, none until an adapter is used
        # End of turn: the tokenizer's EOS plus any the model's generation config lists (some
        # models end turns with a token that is not the tokenizer EOS).
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        configured = configured if isinstance(configured, list) else [configured]
        self.eos_ids = sorted({i for i in [tokenizer.eos_token_id, *configured] if i is not None})
        self._adapters: dict[str, Adapter] = {}  # registry id -> loaded adapter

    @classmethod
    def get(cls, model_id: str, registry: Registry | None = None) -> LoadedModel:
        """The process-wide instance for `model_id`, loaded (and sha256-verified) on first use."""
        registry = registry or Registry()
        card = chat_base_card(registry, model_id)
        key = registry.load_key(card)
        with _CACHE_LOCK:
            if key not in _CACHE:
                _CACHE[key] = cls._load(registry, model_id)
            return _CACHE[key]

    @classmethod
    def _load(cls, registry: Registry, model_id: str) -> LoadedModel:
        from transformers import AutoModelForCausalLM

        from agentkit.registry.loading import load_tokenizer, load_weights

        registry.verify(model_id)
        path = registry.path(model_id)
        tokenizer = load_tokenizer(path, pad=False)
        model = load_weights(path, AutoModelForCausalLM)
        model.eval()
        return cls(registry, model_id, model, tokenizer)

    # ---- prompts --------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return encode_chat(self.tokenizer, self.model_id, messages)

    @property
    def grammar(self) -> Any:
        if self._grammar is None:
            from agentkit.models.grammar import GrammarEngine

            self._grammar = GrammarEngine(self.tokenizer, self.model.config.vocab_size, self.eos_ids)
        return self._grammar

    # ---- adapters: many per base, switched per call -------------------------------------
    def _load_adapter(self, adapter: str) -> Adapter:
        """Check a registry adapter against this base, then load it (cached after the first)."""
        from agentkit.registry.adapters import adapter_of

        adapter_of(self.registry, adapter, self.model_id, task=ModelTask.CAUSAL_LM)
        self.registry.verify(adapter)
        loaded = self._switch.load(str(self.registry.path(adapter)), adapter)
        self._adapters[adapter] = loaded
        return loaded

    @contextmanager
    def _using(self, adapter: str | None) -> Iterator[Any]:
        """The module to run for `adapter` (None = the bare base); call with `self.lock` held.

        A switch between loaded adapters costs microseconds (see AdapterSwitch), so it happens on
        every call; the lock keeps it from changing under a running call.
        """
        if adapter is None:
            yield self._switch.use(None)
            return
        loaded = self._adapters.get(adapter) or self._load_adapter(adapter)
        yield self._switch.use(loaded)

    def continuation_logprobs(
        self, prompt_ids: list[int], texts: list[str], adapter: str | None = None
    ) -> list[float]:
        """log P(text | prompt) for each text, in one right-padded batched forward pass."""
        import torch

        conts = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        width = len(prompt_ids) + max(len(c) for c in conts)
        pad = self.tokenizer.pad_token_id or 0
        rows = [prompt_ids + c + [pad] * (width - len(prompt_ids) - len(c)) for c in conts]
        mask = [[1] * (len(prompt_ids) + len(c)) + [0] * (width - len(prompt_ids) - len(c)) for c in conts]
        # Only the last `keep` positions are needed (the continuations and the prompt's last token):
        # full logits would be (n, width, 49152) floats, gigabytes for a long prompt.
        keep = width - len(prompt_ids) + 1
        with self.lock, self._using(adapter) as module, torch.inference_mode(), torch_threads(None):
            logits = module(
                input_ids=torch.tensor(rows), attention_mask=torch.tensor(mask), logits_to_keep=keep
            ).logits  # (n, keep, vocab): the last `keep` positions
        logp = torch.log_softmax(logits.float(), dim=-1)
        # Logits end at the last input position whatever runs: prompt tuning and P-Tuning put
        # their virtual tokens in front, so only end-aligned indexing is right for every module.
        offset = width - logits.shape[1]
        scores = []
        for i, cont in enumerate(conts):
            # the token at position p is predicted by the logits at p - 1, here index p - 1 - offset
            positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(cont)) - offset
            scores.append(float(logp[i, positions, torch.tensor(cont)].sum()))
        return scores

    # ---- generation -----------------------------------------------------------------------
    def _generate_kwargs(
        self, prompt_ids: list[int], params: GenerationParams, grammar: Any, extra_stop: Any = None
    ) -> dict[str, Any]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList
        from transformers.generation.stopping_criteria import StopStringCriteria

        sample = params.temperature > 0
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            # Explicit values: transformers 5 fills None from the model's generation_config
            # (top_k=50, a repetition penalty some models ship), which the caller did not ask for.
            temperature=params.temperature if sample else 1.0,
            top_p=params.top_p if sample else 1.0,
            top_k=0 if sample else None,  # greedy ignores it (and warns when it is set)
            repetition_penalty=params.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            eos_token_id=self.eos_ids,
            max_time=params.timeout,
        )
        criteria = StoppingCriteriaList()
        if params.stop:
            criteria.append(StopStringCriteria(self.tokenizer, [s for s in params.stop if s]))
        if extra_stop is not None:
            criteria.append(extra_stop)
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "generation_config": config,
            "stopping_criteria": criteria,
            "logits_processor": (
                self.grammar.logits_processors(grammar, len(prompt_ids), params.max_new_tokens)
                if grammar is not None
                else None
            ),
        }

    def _finish(
        self, text: str, n_in: int, n_out: int, params: GenerationParams, hit_eos: bool, seconds: float
    ) -> GenerationOutput:
        text, stopped = cut_at_stop(text, params.stop)
        if stopped or hit_eos:
            reason = "stop"
        elif params.cancel is not None and params.cancel.is_set() and n_out < params.max_new_tokens:
            reason = "cancelled"
        elif params.timeout is not None and seconds >= params.timeout and n_out < params.max_new_tokens:
            reason = "timeout"
        else:
            reason = "length"
        return GenerationOutput(text, n_in, n_out, reason)

    def generate(
        self,
        prompt_ids: list[int],
        params: GenerationParams,
        *,
        grammar: Any = None,
        adapter: str | None = None,
    ) -> GenerationOutput:
        import torch

        cancelled = None if params.cancel is None else _stop_when(params.cancel)
        kwargs = self._generate_kwargs(prompt_ids, params, grammar, extra_stop=cancelled)
        started = time.perf_counter()
        with self.lock, self._using(adapter) as module, torch.inference_mode(), torch_threads(params.threads):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = module.generate(**kwargs)
        new = out[0, len(prompt_ids) :].tolist()
        hit_eos = bool(new) and new[-1] in self.eos_ids
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return self._finish(text, len(prompt_ids), len(new), params, hit_eos, time.perf_counter() - started)

    def stream(
        self,
        prompt_ids: list[int],
        params: GenerationParams,
        *,
        grammar: Any = None,
        adapter: str | None = None,
    ) -> Iterator[str | GenerationOutput]:
        """Yield text deltas as tokens arrive, then one GenerationOutput with the totals.

        Text that could be the start of a stop sequence is held back until it cannot be.
        """
        import torch

        cancel = threading.Event()  # set by a stop sequence or a consumer that leaves
        streamer = _TokenQueue()
        kwargs = self._generate_kwargs(prompt_ids, params, grammar, extra_stop=_stop_when(cancel, params.cancel))
        errors: list[BaseException] = []

        def run() -> None:
            # The worker, not the consumer, holds the lock: an abandoned or interleaved stream
            # (zip of two streams, astream on a thread pool) can then never deadlock the model.
            try:
                with self.lock, self._using(adapter) as module, torch.inference_mode(), torch_threads(params.threads):
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    module.generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # re-raised in the consumer's thread
                errors.append(exc)
                streamer.end()

        hold = max((len(s) for s in params.stop), default=1) - 1
        ids: list[int] = []
        text = ""  # decoded so far
        emitted = 0
        # Incremental detokenisation (as in TGI / vLLM): decode a short window, not all ids, so a
        # token costs O(1) to decode; the window start keeps merges across token borders right.
        prefix_at = read_at = 0
        started = time.perf_counter()
        worker = threading.Thread(target=run, name=f"agentkit-generate-{self.model_id}", daemon=True)
        worker.start()
        try:
            while (item := streamer.queue.get()) is not None:
                ids.extend(item)
                before = self.tokenizer.decode(ids[prefix_at:read_at], skip_special_tokens=True)
                window = self.tokenizer.decode(ids[prefix_at:], skip_special_tokens=True)
                if len(window) <= len(before) or window.endswith("\ufffd"):  # half a UTF-8 character
                    continue
                text += window[len(before) :]
                prefix_at, read_at = read_at, len(ids)
                cut, stopped = cut_at_stop(text, params.stop)
                if stopped:
                    cancel.set()
                    break
                safe = len(cut) - hold
                if safe > emitted:
                    yield cut[emitted:safe]
                    emitted = safe
            worker.join()
            if errors:
                raise errors[0]
            hit_eos = bool(ids) and ids[-1] in self.eos_ids
            # The reply is the streamed text: a fresh decode of all ids may differ in spacing.
            final = self._finish(text, len(prompt_ids), len(ids), params, hit_eos, time.perf_counter() - started)
            if len(final.text) > emitted:
                yield final.text[emitted:]
            yield final
        finally:
            cancel.set()


def _stop_when(*events: threading.Event | None) -> Any:
    """A transformers StoppingCriteria that ends generation once any of `events` is set."""
    import torch
    from transformers import StoppingCriteria

    watched = [e for e in events if e is not None]

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), any(e.is_set() for e in watched), dtype=torch.bool)

    return _Cancelled()

"""Which runtime runs a chat model: `engine: auto | transformers | llamacpp`, the rule `auto` follows,
and where an entry's GGUF (and, later, an adapter's GGUF LoRA) is found.

Both runtimes offer one surface (`ChatEngine`), so `LocalChatModel` never asks which one it holds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from agentkit.errors import BadInputError, IntegrityError
from agentkit.registry import EntryKind, ModelCard, Registry

# PEFT types whose adapter is a learned prompt (virtual tokens, per-layer prefixes), not a weight
# delta: llama.cpp has no way to run them, so they stay on transformers.
PROMPT_LEARNING = {"PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING"}


class Engine(str, Enum):
    """Persisted in goal files and CLI flags: the runtime a local chat model runs on."""

    AUTO = "auto"
    TRANSFORMERS = "transformers"
    LLAMACPP = "llamacpp"


class ChatEngine(Protocol):
    """What `LocalChatModel` needs from a runtime (runtime.LoadedModel, llamacpp.LlamaCppModel)."""

    model_id: str
    engine: Engine

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]: ...

    @property
    def grammar(self) -> Any: ...  # json_schema / any_json / tool_calls -> a constraint

    def continuation_logprobs(
        self, prompt_ids: list[int], texts: list[str], adapter: str | None = None
    ) -> list[float]: ...

    def generate(
        self, prompt_ids: list[int], params: Any, *, grammar: Any = None, adapter: str | None = None
    ) -> Any: ...  # a runtime.GenerationOutput

    def stream(
        self, prompt_ids: list[int], params: Any, *, grammar: Any = None, adapter: str | None = None
    ) -> Iterator[Any]: ...  # text deltas, then one runtime.GenerationOutput


# ---- where the GGUF files are --------------------------------------------------------------------
_VERIFIED: set[tuple[str, float, str]] = set()  # (path, mtime, sha256) hashed once per process
_VERIFY_LOCK = threading.Lock()


def gguf_path(registry: Registry, card: ModelCard) -> Path | None:
    """The GGUF holding `card`'s weights as llama.cpp runs them, or None when there is none.

    The one place that knows where GGUFs live, in order: the card's `gguf` field (a file kept in
    the entry; built-ins made since that field exists), a built-in entry made before it (the pinned
    package's file, when the package is one whole GGUF), an imported `.gguf` still at its path.
    """
    kept = getattr(card, "gguf", None)
    if kept is not None:
        return _checked(registry.entry_dir(card.id) / kept.file, kept.sha256, card.id)
    if card.kind is not EntryKind.BASE:
        return None
    if card.source.type == "package":
        from agentkit.registry.builtins import builtin_specs

        spec = builtin_specs().get(card.id)
        packages = getattr(spec, "packages", ())
        gguf = getattr(spec, "gguf", None)
        if gguf is None or len(packages) != 1 or packages[0].pin != card.source.ref:
            return None
        path = packages[0].data_path()
        return _checked(path, gguf.sha256, card.id) if path is not None else None
    if card.source.type == "gguf":
        path = Path(card.source.ref)
        return _checked(path, card.source.sha256, card.id) if path.is_file() else None
    return None


def _checked(path: Path, sha256: str | None, entry_id: str) -> Path:
    """`path`, once its bytes match `sha256` (hashed once per process: ~0.3 s per 100 MB)."""
    if sha256 is None:
        return path
    from agentkit.registry.store import sha256_file

    key = (str(path), path.stat().st_mtime, sha256)
    with _VERIFY_LOCK:
        if key not in _VERIFIED:
            actual = sha256_file(path)
            if actual != sha256:
                raise IntegrityError(
                    f"The GGUF {path} of {entry_id!r} does not match the sha256 in its card "
                    f"(expected {sha256[:12]}..., found {actual[:12]}...); nothing was loaded.",
                    fix=f"restore the file, or `agentkit models rm {entry_id}` and import it again.",
                )
            _VERIFIED.add(key)
    return path


def peft_type(registry: Registry, adapter: str) -> str | None:
    """The adapter's PEFT type as its adapter_config.json records it ("LORA", "PREFIX_TUNING", ...)."""
    config = registry.path(adapter) / "adapter_config.json"
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("peft_type") or "").upper() or None
    except (OSError, ValueError):
        return None


_LORA_GGUF: dict[tuple[Any, ...], Path | None] = {}  # (adapter load key, base GGUF) -> file or None
_LORA_LOCK = threading.Lock()


def lora_gguf_path(registry: Registry, adapter: str, model_id: str, *, strict: bool = False) -> Path | None:
    """The GGUF LoRA llama.cpp applies for `adapter` on base `model_id`, converted from its PEFT
    files on first use (registry.gguf_lora.ensure_gguf_lora) and remembered for this process.

    None when llama.cpp cannot run it (a base without a GGUF, a LoRA variant the converter
    refuses); with `strict`, the one-line BadInputError that names the reason instead.
    """
    from agentkit.registry.gguf_lora import ensure_gguf_lora

    card = registry.card(model_id)
    base_gguf = gguf_path(registry, card) if card.kind is EntryKind.BASE else None
    if base_gguf is None:
        if strict:
            raise BadInputError(
                f"{model_id!r} has no GGUF file, so llama.cpp cannot run adapter {adapter!r} on it.",
                fix="use engine: transformers (or engine: auto) for this adapter.",
            )
        return None
    key = (registry.load_key(registry.card(adapter)), str(base_gguf))
    with _LORA_LOCK:
        if key in _LORA_GGUF and (_LORA_GGUF[key] is not None or not strict):
            return _LORA_GGUF[key]
        try:
            path: Path | None = ensure_gguf_lora(registry, adapter, base=model_id, base_gguf=base_gguf)
        except BadInputError:
            _LORA_GGUF[key] = None
            if strict:
                raise
            return None
        _LORA_GGUF[key] = path
        return path


# ---- the rule --------------------------------------------------------------------------------------
# Whether `auto` may pick llama.cpp (a switch for tests of the rule and for bisecting a regression).
AUTO_PICKS_LLAMACPP = True


def resolve_engine(engine: Engine | str, model_id: str, adapter: str | None, registry: Registry, *,
                   auto_picks_llamacpp: bool | None = None) -> Engine:  # fmt: skip
    """`auto` -> llama.cpp for a base entry with a GGUF and no adapter or a LoRA adapter that
    converts to a GGUF LoRA; transformers otherwise (prompt-learning adapters, entries without a
    GGUF). A forced llama.cpp that cannot run the request fails with the one-line fix."""
    engine = Engine(engine)
    if engine is Engine.TRANSFORMERS:
        return engine
    card = registry.card(model_id)
    kind = peft_type(registry, adapter) if adapter else None
    if engine is Engine.AUTO:
        if not (AUTO_PICKS_LLAMACPP if auto_picks_llamacpp is None else auto_picks_llamacpp):
            return Engine.TRANSFORMERS
        if card.kind is not EntryKind.BASE or gguf_path(registry, card) is None:
            return Engine.TRANSFORMERS
        if adapter and (kind in PROMPT_LEARNING or lora_gguf_path(registry, adapter, model_id) is None):
            return Engine.TRANSFORMERS
        return Engine.LLAMACPP
    if adapter and kind in PROMPT_LEARNING:
        raise BadInputError(
            f"Adapter {adapter!r} is a {kind.lower()} adapter (a learned prompt); llama.cpp cannot run it.",
            fix="use engine: transformers (or engine: auto) for this adapter.",
        )
    if card.kind is EntryKind.BASE and gguf_path(registry, card) is None:
        raise BadInputError(
            f"{model_id!r} has no GGUF file, which the llama.cpp engine runs.",
            fix="use engine: transformers, or import the model from its .gguf (`agentkit models import FILE.gguf`).",
        )
    if adapter:
        lora_gguf_path(registry, adapter, model_id, strict=True)  # the reason it cannot, in one line
    return Engine.LLAMACPP


def load_engine(
    engine: Engine | str,
    model_id: str,
    adapter: str | None,
    registry: Registry,
    *,
    threads: int | None = None,
    n_ctx: int | None = None,
) -> ChatEngine:
    """The process-wide loaded runtime for `model_id` under `engine` (resolved as `resolve_engine`)."""
    from agentkit.models.runtime import LoadedModel

    chosen = resolve_engine(engine, model_id, adapter, registry)
    if chosen is Engine.TRANSFORMERS:
        return LoadedModel.get(model_id, registry)
    from agentkit.models.llamacpp import LlamaCppModel

    return LlamaCppModel.get(model_id, registry, threads=threads, n_ctx=n_ctx)

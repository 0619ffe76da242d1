"""Which registry entries the server offers, and what a request's `model` runs: a base, an adapter
(on its base, switched per request), or an alias of either, resolved on every request so that a
`agentkit models promote` is seen by the next one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentkit.errors import BadInputError, ModelNotInstalledError, UnknownModelError
from agentkit.names import REGISTRY_ID
from agentkit.registry import EntryKind, ModelCard, ModelTask, Registry, builtin_specs
from agentkit.server.errors import ApiError, bad_request, from_exception, model_not_found

OWNER = "agentkit"


@dataclass(frozen=True)
class ChatTarget:
    """What one chat request runs: `LocalChatModel(model=base, adapter=adapter)`."""

    requested: str
    base: str
    adapter: str | None


def _model_object(model_id: str, created: int, *, root: str, parent: str | None) -> dict[str, Any]:
    # `root` / `parent` as vLLM's multi-LoRA server spells them: what runs, and an adapter's base.
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNER, "root": root, "parent": parent}


def list_chat_models(registry: Registry) -> list[dict[str, Any]]:
    """Every entry that can chat (causal_lm bases and their adapters), installed built-ins not yet
    converted, and the aliases that point at one of them; sorted by id."""
    cards = {c.id: c for c in registry.list() if c.task is ModelTask.CAUSAL_LM}
    found = [
        _model_object(c.id, int(c.created.timestamp()), root=c.id, parent=c.base if c.kind is EntryKind.ADAPTER else None)
        for c in cards.values()
    ]
    for spec in builtin_specs().values():
        # A built-in made from a GGUF is a causal LM (importer.convert_gguf); it is converted on first use.
        if spec.id not in cards and spec.id not in registry and spec.gguf is not None and not spec.missing():
            found.append(_model_object(spec.id, 0, root=spec.id, parent=None))
    listed = {m["id"] for m in found}
    for alias, record in registry.aliases().items():
        target = cards.get(record["target"])
        if target is not None and alias not in listed:
            parent = target.base if target.kind is EntryKind.ADAPTER else None
            found.append(_model_object(alias, int(target.created.timestamp()), root=target.id, parent=parent))
    return sorted(found, key=lambda m: m["id"])


def _card(registry: Registry, model_id: str) -> ModelCard:
    """The card of `model_id` (a built-in is converted on first use), or the 404 that names it."""
    if not REGISTRY_ID.is_valid(model_id):
        raise model_not_found(model_id)
    try:
        return registry.card(model_id)
    except ModelNotInstalledError:
        raise model_not_found(model_id, fix=f"run `agentkit models install {model_id}` on the server.") from None
    except UnknownModelError:
        raise model_not_found(model_id) from None


def chat_target(registry: Registry, model_id: str) -> ChatTarget:
    """What `model` of a chat request runs; 404 for an unknown id, 400 for a model that cannot chat."""
    try:
        base, adapter = registry.resolve_chat(model_id) if REGISTRY_ID.is_valid(model_id) else (model_id, None)
    except BadInputError as exc:
        raise from_exception(exc, param="model") from None
    card = _card(registry, adapter or base)
    if card.task is not ModelTask.CAUSAL_LM:
        raise bad_request(
            f"{model_id!r} is a {card.task.value} model, not a chat model. Fix: use it with "
            "/v1/embeddings if it is an embedding model, or pick a chat model from GET /v1/models.",
            "model", code="model_not_chat",
        )
    if card.kind is EntryKind.ADAPTER:
        if card.base is None:
            raise ApiError(500, f"Adapter {card.id!r} has no base in its card.", type="server_error")
        return ChatTarget(model_id, card.base, card.id)
    return ChatTarget(model_id, base, None)


def embedding_model(registry: Registry, model_id: str) -> str:
    """The registry id of an embedding model; 404 for an unknown id, 400 for a chat model."""
    card = _card(registry, model_id)  # no aliases here: an alias serves chat models only (registry/aliases.py)
    if card.task is not ModelTask.EMBEDDING:
        raise bad_request(
            f"{model_id!r} is a {card.task.value} model, not an embedding model. Fix: use an embedding "
            "model such as 'minilm-l6'.", "model", code="model_not_embedding",
        )
    return card.id

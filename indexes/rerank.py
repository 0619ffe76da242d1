"""The optional cross-encoder reranker: a registry sequence-classification model with one output.

`rerank="auto"` uses one when the registry holds it and skips reranking (with a warning) when not.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from agentkit.errors import BadInputError
from agentkit.registry import ModelTask

if TYPE_CHECKING:
    from agentkit.registry import Registry

log = logging.getLogger(__name__)
AUTO = "auto"
_LOADED: dict[tuple[str, str, tuple[str, ...]], Any] = {}
_LOCK = threading.Lock()


class Reranker:
    """Scores (query, passage) pairs jointly; higher = more relevant."""

    def __init__(self, model_id: str, model: Any) -> None:
        self.model_id = model_id
        self._model = model

    def score(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        scores = self._model.predict([(query, t) for t in texts], batch_size=32, show_progress_bar=False)
        return [float(s) for s in scores]


def is_cross_encoder(registry: Registry, model_id: str) -> bool:
    """A sequence-classification entry with exactly one label scores relevance (ms-marco style)."""
    card = registry.card(model_id)
    if card.task is not ModelTask.SEQUENCE_CLASSIFICATION or card.kind.value != "base":
        return False
    config = registry.entry_dir(model_id) / "config.json"
    if not config.is_file():
        return False
    data = json.loads(config.read_text(encoding="utf-8"))
    return len(data.get("id2label") or {}) == 1 or data.get("num_labels") == 1


def find_cross_encoder(registry: Registry) -> str | None:
    return next((i for i in registry.ids() if is_cross_encoder(registry, i)), None)


def load_reranker(registry: Registry, choice: str) -> Reranker | None:
    """`choice`: a registry id, or "auto" (the first cross-encoder in the registry, else None)."""
    if choice == AUTO:
        model_id = find_cross_encoder(registry)
        if model_id is None:
            log.warning(
                "rerank='auto': no cross-encoder in the registry at %s; results are not reranked.",
                registry.root,
            )
            return None
    else:
        model_id = choice
        if not is_cross_encoder(registry, model_id):  # unknown ids raise UnknownModelError here
            raise BadInputError(
                f"{model_id!r} is not a cross-encoder (a sequence-classification model with one output).",
                fix="import one with `agentkit models import PATH`, or use rerank='auto' / no rerank.",
            )
    card = registry.card(model_id)
    key = registry.load_key(card)
    with _LOCK:
        if key not in _LOADED:
            from sentence_transformers import CrossEncoder

            registry.verify(model_id)
            _LOADED[key] = CrossEncoder(str(registry.path(model_id)), device="cpu", local_files_only=True)
    return Reranker(model_id, _LOADED[key])

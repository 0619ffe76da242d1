"""`LocalEmbeddings`: LangChain `Embeddings` over a registry embedding model (default minilm-l6)."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from agentkit.errors import BadInputError
from agentkit.registry import ModelTask, Registry

_LOADED: dict[tuple[str, str, tuple[str, ...]], Any] = {}
_LOAD_LOCK = threading.Lock()


class LocalEmbeddings(BaseModel, Embeddings):
    """Sentence embeddings from the registry, computed in-process on the CPU.

    Example:
        ```python
        from agentkit.models import LocalEmbeddings

        vectors = LocalEmbeddings().embed_documents(["a cat", "a dog"])  # 2 x 384
        ```
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(default="minilm-l6", description="registry id of an embedding model")
    batch_size: int = Field(default=32, gt=0)
    normalize: bool = Field(default=True, description="unit-length vectors (cosine = dot product)")
    home: str | None = Field(default=None, description="registry root; default $AGENTKIT_HOME")
    _encoder: Any = PrivateAttr(default=None)

    def _load(self) -> Any:
        if self._encoder is not None:
            return self._encoder
        registry = Registry(self.home)  # None: $AGENTKIT_HOME
        card = registry.card(self.model)
        if card.task is not ModelTask.EMBEDDING:
            raise BadInputError(
                f"{self.model!r} is a {card.task.value} model, not an embedding model.",
                fix="use model='minilm-l6' or another embedding entry from `agentkit models list`.",
            )
        key = registry.load_key(card)
        with _LOAD_LOCK:
            if key not in _LOADED:
                from sentence_transformers import SentenceTransformer

                registry.verify(self.model)
                _LOADED[key] = SentenceTransformer(
                    str(registry.path(self.model)), device="cpu", local_files_only=True
                )
        self._encoder = _LOADED[key]
        return self._encoder

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(float).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]

    @property
    def dimension(self) -> int:
        model = self._load()  # sentence-transformers 5.x renamed the method; keep both working
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

"""POST /v1/embeddings: registry embedding models (minilm-l6) through `LocalEmbeddings`, the class the
indexes use, so a vector from the server equals one from an index built in-process."""

from __future__ import annotations

import base64
from typing import Any

from agentkit.registry import Registry
from agentkit.server import schemas
from agentkit.server.catalog import embedding_model
from agentkit.server.errors import bad_request
from agentkit.server.settings import ServeSettings


def embed(request: schemas.EmbeddingRequest, registry: Registry, settings: ServeSettings) -> dict[str, Any]:
    """The reply body; blocking (run it in a thread)."""
    import numpy as np

    from agentkit.models.embeddings import LocalEmbeddings

    texts = request.texts
    if len(texts) > settings.max_embedding_inputs:
        raise bad_request(f"Invalid input: {len(texts)} texts, above this server's limit of "
                          f"{settings.max_embedding_inputs}. Fix: split the request.", "input", code="invalid_value")  # fmt: skip
    model_id = embedding_model(registry, request.model)
    embeddings = LocalEmbeddings(model=model_id, home=settings.home)
    if request.dimensions is not None and request.dimensions != embeddings.dimension:
        raise bad_request(f"Invalid dimensions: {model_id!r} makes {embeddings.dimension}-dimensional vectors "
                          f"only, not {request.dimensions}. Fix: leave dimensions unset.", "dimensions",
                          code="invalid_value")  # fmt: skip
    vectors = embeddings.embed_documents(texts)
    data = []
    for index, vector in enumerate(vectors):
        value: Any = vector
        if request.encoding_format == "base64":
            # What the `openai` client asks for by default: little-endian float32 bytes.
            value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = _count_tokens(embeddings, texts)
    return {"object": "list", "data": data, "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


def _count_tokens(embeddings: Any, texts: list[str]) -> int:
    """Tokens the encoder read: each text's ids (with [CLS]/[SEP]), cut at the model's max_seq_length
    as sentence-transformers cuts them (256 for MiniLM-L6)."""
    encoder = embeddings._load()  # the shared, already-loaded SentenceTransformer
    limit = int(getattr(encoder, "max_seq_length", 0) or 0) or None
    counts = [len(ids) for ids in encoder.tokenizer(texts, add_special_tokens=True)["input_ids"]]
    return sum(min(n, limit) if limit else n for n in counts)

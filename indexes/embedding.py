"""Embeddings glue: a registry model (LocalEmbeddings) or any LangChain Embeddings, pinned by the spec.

Also the tokenizer length function the token-aware splitter measures chunks with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agentkit.errors import BadInputError
from agentkit.indexes.spec import EmbeddingSpec, IndexSpec, SplitterKind, SplitterSpec

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from agentkit.registry import Registry

_CUSTOM = "custom:"


def fingerprint(registry: Registry, model: str) -> str:
    """sha256 over the model's weight hashes: a re-imported id with other weights gets another value."""
    weights = registry.card(model).weights
    return hashlib.sha256(json.dumps(sorted(weights.items())).encode()).hexdigest()


def registry_embeddings(registry: Registry, model: str) -> Embeddings:
    from agentkit.models import LocalEmbeddings

    return LocalEmbeddings(model=model, home=str(registry.root))


def describe_embeddings(registry: Registry, embeddings: Embeddings | str) -> tuple[Embeddings, EmbeddingSpec]:
    """(embeddings, spec) for a registry id or an Embeddings object; measures the dimension once."""
    if isinstance(embeddings, str):
        model = embeddings
        live = registry_embeddings(registry, model)
        dimension = live.dimension  # loads the model; raises with the fix for a wrong or missing id
        return live, EmbeddingSpec(model=model, dimension=dimension, fingerprint=fingerprint(registry, model))
    cls = type(embeddings)
    dimension = len(embeddings.embed_query("dimension probe"))
    return embeddings, EmbeddingSpec(
        model=f"{_CUSTOM}{cls.__module__}.{cls.__qualname__}", dimension=dimension
    )


def embeddings_for(spec: IndexSpec, registry: Registry, given: Embeddings | None) -> Embeddings:
    """The embeddings an existing index must be used with, refusing any that differ from its spec."""
    wanted = spec.embedding
    if wanted.is_registry:
        if given is not None and getattr(given, "model", None) != wanted.model:
            raise BadInputError(
                f"Index {spec.name!r} was built with embedding model {wanted.model!r} (dimension {wanted.dimension}); "
                f"refusing {type(given).__name__}.",
                fix=f"pass no embeddings (the index loads {wanted.model}), or build a new index.",
            )
        current = fingerprint(registry, wanted.model)
        if current != wanted.fingerprint:
            raise BadInputError(
                f"Index {spec.name!r} was built with {wanted.model!r}, whose weights have changed since "
                "(a re-import): its vectors no longer match queries.",
                fix=f"rebuild it: `agentkit index rm {spec.name}` then `agentkit index add {spec.name} PATH...`.",
            )
        return given or registry_embeddings(registry, wanted.model)
    if given is None:
        raise BadInputError(
            f"Index {spec.name!r} was built with custom embeddings {wanted.model.removeprefix(_CUSTOM)}.",
            fix="open it from Python with open_index(name, embeddings=<the same Embeddings>).",
        )
    cls = type(given)
    if f"{_CUSTOM}{cls.__module__}.{cls.__qualname__}" != wanted.model:
        raise BadInputError(
            f"Index {spec.name!r} was built with {wanted.model.removeprefix(_CUSTOM)}, not {cls.__qualname__}.",
            fix="pass the same Embeddings class the index was built with, or build a new index.",
        )
    return given


def token_length(
    registry: Registry, spec: EmbeddingSpec, splitter: SplitterSpec
) -> Callable[[str], int] | None:
    """For the tokens splitter: count tokens with the embedding model's own tokenizer.json."""
    if splitter.kind is not SplitterKind.TOKENS:
        return None
    if not spec.is_registry:
        raise BadInputError(
            "The tokens splitter counts with the embedding model's tokenizer; custom embeddings have none here.",
            fix="use splitter kind 'recursive', or a registry embedding model.",
        )
    from tokenizers import Tokenizer

    folder = registry.path(spec.model)
    limit = _max_tokens(folder)
    if limit is not None and splitter.chunk_size + 2 > limit:  # +2: [CLS] and [SEP]
        raise BadInputError(
            f"chunk_size {splitter.chunk_size} tokens does not fit {spec.model}'s {limit}-token window "
            "(the rest would be cut off when embedding).",
            fix=f"use --chunk-size {limit - 2} or less.",
        )
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # tokenizer.json may carry the model's padding (MiniLM pads to 128) and truncation: a length
    # function must see the text's own tokens.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def _max_tokens(folder: Path) -> int | None:
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        return int(value) if value else None
    return None

"""The index spec (`spec.json`): what an index was built with, checked on every open and add.

Embedding model + dimension + fingerprint, splitter settings and backend are fixed at creation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.names import INDEX_NAME

SPEC_FILE = "spec.json"
SPEC_SCHEMA_VERSION = 1


def validate_index_name(name: str) -> str:
    return INDEX_NAME.check(name)


class SplitterKind(str, Enum):
    """Persisted discriminator: how chunk length is measured."""

    RECURSIVE = "recursive"  # characters, RecursiveCharacterTextSplitter
    TOKENS = "tokens"  # tokens of the embedding model's own tokenizer


# (chunk_size, chunk_overlap) when not given. 1000/100 characters is LangChain's usual RAG default;
# 200/20 tokens leaves room inside MiniLM's 256-token window for [CLS] and [SEP].
_SPLITTER_DEFAULTS = {SplitterKind.RECURSIVE: (1000, 100), SplitterKind.TOKENS: (200, 20)}


class SplitterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SplitterKind = Field(default=SplitterKind.RECURSIVE, description="recursive (characters) | tokens")
    chunk_size: int = Field(
        default=0, ge=0, description="characters or tokens per chunk; 0 = the kind's default"
    )
    chunk_overlap: int = Field(
        default=-1, ge=-1, description="overlap between chunks; -1 = the kind's default"
    )

    @model_validator(mode="after")
    def _resolve_defaults(self) -> SplitterSpec:
        size, overlap = _SPLITTER_DEFAULTS[self.kind]
        if self.chunk_size == 0:
            self.chunk_size = size
        if self.chunk_overlap == -1:
            self.chunk_overlap = min(overlap, self.chunk_size // 2)
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


class EmbeddingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(
        description="registry id (e.g. minilm-l6), or custom:<module.Class> for any LangChain Embeddings"
    )
    dimension: int = Field(gt=0)
    fingerprint: str = Field(
        default="", description="sha256 of the registry weights; '' for custom embeddings"
    )

    @property
    def is_registry(self) -> bool:
        return not self.model.startswith("custom:")


class IndexSpec(BaseModel):
    """Everything an index was built with; a later add or open that disagrees is refused by field."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SPEC_SCHEMA_VERSION
    name: str
    backend: str = Field(default="faiss", description="a registered backend: faiss | chroma")
    backend_options: dict[str, str | int | bool | None] = Field(
        default_factory=dict,
        description="validated by the backend's options class (chroma: host, port, collection)",
    )
    embedding: EmbeddingSpec
    splitter: SplitterSpec = Field(default_factory=SplitterSpec)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _check_name(self) -> IndexSpec:
        validate_index_name(self.name)
        return self

    @classmethod
    def load(cls, folder: Path) -> IndexSpec:
        return cls.model_validate_json((folder / SPEC_FILE).read_text(encoding="utf-8"))

    def mismatches(self, **requested: object) -> list[str]:
        """`field: built with X, asked for Y` for every requested value (None = not asked) that differs."""
        built = {
            "embedding": self.embedding.model,
            "backend": self.backend,
            "splitter": self.splitter.kind.value,
            "chunk_size": self.splitter.chunk_size,
            "chunk_overlap": self.splitter.chunk_overlap,
            **{f"backend_options.{k}": v for k, v in self.backend_options.items()},
        }
        out = []
        for field, value in requested.items():
            if value is None:
                continue
            value = value.value if isinstance(value, Enum) else value
            if built.get(field) != value:
                out.append(f"{field}: built with {built.get(field)!r}, asked for {value!r}")
        return out

"""The model card: what the registry knows about one entry (a base model or an adapter).

A card is written as `card.json` inside the entry's folder; it is the last file written, and the
folder only becomes visible by an atomic rename, so a readable card means a complete entry.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

CARD_FILE = "card.json"
CARD_SCHEMA_VERSION = 1


class EntryKind(str, Enum):
    """Persisted discriminator: a full model, or weights that need a base."""

    BASE = "base"
    ADAPTER = "adapter"


class ModelTask(str, Enum):
    """What the weights compute; picks the transformers Auto class on load."""

    CAUSAL_LM = "causal_lm"
    EMBEDDING = "embedding"
    SEQUENCE_CLASSIFICATION = "sequence_classification"


class SourceInfo(BaseModel):
    """Where an entry came from: a PyPI package, an imported folder or GGUF file, a tuning run."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="package | gguf | hf_folder | tuning")
    ref: str = Field(description="package==version, a path, or a run id")
    sha256: str | None = Field(default=None, description="sha256 of the source file, when a file")


_GGUF_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*\.gguf$"  # a plain name: no folder, nothing hidden


class GgufFile(BaseModel):
    """A GGUF kept inside the entry beside its de-quantised safetensors, for engines that run the
    quantised weights as they are (llama.cpp)."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="file name inside the entry folder", pattern=_GGUF_NAME)
    sha256: str = Field(description="sha256 of the file's bytes", pattern=r"^[0-9a-f]{64}$")


class Stage(str, Enum):
    """Persisted: where an entry stands in evaluation. `champion` while an alias points at it,
    `retired` once no alias does any more, `candidate` when evaluated and not promoted."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"


class EvaluationEvent(str, Enum):
    """Persisted discriminator of an `EvaluationRecord`."""

    PROMOTED = "promoted"  # an alias now points here; `beat` is the evaluation of the one replaced
    CANDIDATE = "candidate"  # evaluated, not promoted
    ROLLED_BACK = "rolled_back"  # an alias was pointed back from here to its earlier target
    RESTORED = "restored"  # an alias was pointed back here by a rollback


class EvaluationRecord(BaseModel):
    """One line of an entry's evaluation history, appended by promote / mark_candidate / rollback."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    event: EvaluationEvent
    alias: str | None = Field(default=None, description="the alias promoted or rolled back; None for a candidate")
    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    evaluation: dict[str, Any] | None = Field(default=None, description="the evaluation of this entry (JSON)")
    beat: dict[str, Any] | None = Field(default=None, description="the evaluation of the target it replaced")


def validate_entry_id(value: str) -> str:
    from agentkit.names import REGISTRY_ID

    return REGISTRY_ID.check(value)


class ModelCard(BaseModel):
    """Everything needed to load, verify and trace one registry entry."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    schema_version: int = CARD_SCHEMA_VERSION
    id: str
    kind: EntryKind
    task: ModelTask
    base: str | None = Field(default=None, description="base model id; adapters only")
    method: str | None = Field(default=None, description="how it was made: gguf-dequant, lora, ...")
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    source: SourceInfo
    weights: dict[str, str] = Field(description="weight file name -> sha256 of its bytes")
    tokenizer: str | None = Field(default=".", description="tokenizer folder, relative to entry")
    chat_template: str | None = None
    gguf: GgufFile | None = Field(default=None, description="the GGUF the weights came from, when kept")
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict, description="config, data hashes, ...")
    # Both default, so cards written before aliases existed still load (schema_version stays 1).
    stage: Stage | None = Field(default=None, description="candidate | champion | retired; None: never evaluated")
    evaluations: list[EvaluationRecord] = Field(
        default_factory=list, description="promotions, rollbacks and evaluations, oldest first"
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return validate_entry_id(value)

    def summary(self) -> dict[str, Any]:
        """The row `agentkit models list` prints."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "task": self.task.value,
            "base": self.base,
            "method": self.method,
            "created": self.created.isoformat(timespec="seconds"),
            "stage": self.stage.value if self.stage else None,
        }


def check_trained_on(adapter: ModelCard, base: ModelCard) -> None:
    """Refuse an adapter whose lineage says it was trained on other weights than `base` has now
    (a base re-imported or replaced under the same id): its updates would not fit them."""
    from agentkit.errors import BadInputError

    expected = adapter.lineage.get("base_weights_sha256")
    if expected and expected != base.weights:
        raise BadInputError(
            f"Adapter {adapter.id!r} was trained on other weights than the {base.id!r} now in the registry "
            "(base sha256 differs).",
            fix=f"re-import the original base, or retrain the adapter on this {base.id!r}.",
        )

"""The model card: what the registry knows about one entry (a base model or an adapter).

A card is written as `card.json` inside the entry's folder; it is the last file written, and the
folder only becomes visible by an atomic rename, so a readable card means a complete entry.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class StartLineage(BaseModel):
    """Where a tuning stage started: the entry named in its `base:`, the base that holds the full
    weights, and the adapter folded into them for training (an SFT LoRA under a reward, PPO, ...)."""

    model_config = ConfigDict(extra="forbid")

    entry: str = Field(description="the registry id the stage started from (a base or an adapter)")
    method: str | None = Field(default=None, description="that entry's method (sft, lora, ...); None for a base")
    base: str | None = Field(
        default=None, description="the base entry whose weights were loaded; None only in early cards"
    )
    folded_adapter: str | None = Field(
        default=None, description="the adapter folded into the base weights before training; None: none was"
    )
    weights_sha256: dict[str, str] | None = Field(default=None, description="the start entry's weights")


class Lineage(BaseModel):
    """How an entry was made, as its card records it. The fields every reader needs are typed here;
    facts of one stage only (train_pairs, reference, frozen_layers, ...) stay as extra keys.

    Cards written before this model existed still load: their start keys (`started_from`,
    `merged_adapter` of the reward and DPO stages; `policy_from`, `base` of the RL stages) are read
    into `start`."""

    model_config = ConfigDict(extra="allow")

    config: dict[str, Any] | None = Field(default=None, description="the tune.yaml that made it (method block by name)")
    base_weights_sha256: dict[str, str] | None = Field(default=None, description="the base weights trained on")
    start: StartLineage | None = Field(default=None, description="where a stage started (RLHF stages)")
    data_sha256: str | None = Field(default=None, description="sha256 of the data file(s), ':'-joined")
    data_rows: int | None = None
    train_rows: int | None = None
    eval_rows: int | None = None
    label_names: list[str] | None = Field(default=None, description="class names of a classifier")
    init_adapter: str | None = Field(default=None, description="the LoRA a continued LoRA started from")
    init_adapter_weights_sha256: dict[str, str] | None = None
    reward_model: str | None = Field(default=None, description="the reward entry an RL stage trained against")
    reward_weights_sha256: dict[str, str] | None = None
    merged_from: str | None = Field(default=None, description="the adapter a merge folded into its base")
    merged_from_weights_sha256: dict[str, str] | None = None
    adapter_lineage: Lineage | None = Field(default=None, description="a merge: the merged adapter's lineage")
    gguf_lora: dict[str, Any] | None = Field(default=None, description="the llama.cpp LoRA converted from it")
    pipeline: dict[str, Any] | None = Field(default=None, description="the pipeline and stage that made it")

    @model_validator(mode="before")
    @classmethod
    def _earlier_layouts(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)
        if "started_from" in values:  # reward and dpo cards before the typed lineage
            entry, method = values.pop("started_from"), values.pop("started_from_method", None)
            values["start"] = {
                "entry": entry,
                "method": method,
                # The start was a base when it had no method; else its base is the card's (filled below).
                "base": None if method else entry,
                "folded_adapter": values.pop("merged_adapter", None),
                "weights_sha256": values.pop("start_weights_sha256", None),
            }
        elif "policy_from" in values:  # ppo, grpo and rloo cards before it
            entry, folded = values.pop("policy_from"), values.pop("sft_lora_folded_in", False)
            values["start"] = {"entry": entry, "base": values.pop("base", entry),
                               "folded_adapter": entry if folded else None}  # fmt: skip
        elif "adapter" in values and "adapter_lineage" in values:  # merged entries before it
            values["merged_from"] = values.pop("adapter")
            values["merged_from_weights_sha256"] = values.pop("adapter_weights_sha256", None)
            values.pop("base", None)  # the card's own `source` and the merged adapter's card say it
        return values

    @property
    def trained(self) -> Lineage:
        """The lineage of the training run itself: a merged entry's is its adapter's."""
        return self.adapter_lineage or self

    @property
    def max_length(self) -> int | None:
        """train.max_length of the run that made it, if its config recorded one."""
        return ((self.trained.config or {}).get("train") or {}).get("max_length")

    def method_block(self, method: str | None) -> dict[str, Any] | None:
        """The method's own block of the recorded config (`lora: {...}`), if there is one."""
        block = (self.config or {}).get(method or "")
        return block if isinstance(block, dict) else None

    def parent(self) -> str | None:
        """The entry this one was made from, when the lineage says: the LoRA it continued, the entry
        a stage started from (a base, or the SFT adapter), or the adapter a merge folded."""
        if self.init_adapter:
            return self.init_adapter
        if self.start is not None:
            return self.start.entry
        return self.merged_from


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
    lineage: Lineage = Field(default_factory=Lineage, description="how it was made: config, start, data hashes, ...")
    # Both default, so cards written before aliases existed still load (schema_version stays 1).
    stage: Stage | None = Field(default=None, description="candidate | champion | retired; None: never evaluated")
    evaluations: list[EvaluationRecord] = Field(
        default_factory=list, description="promotions, rollbacks and evaluations, oldest first"
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return validate_entry_id(value)

    @model_validator(mode="after")
    def _start_base_of_early_cards(self) -> ModelCard:
        # A reward or DPO adapter written before the typed lineage: its start's base is its own base.
        start = self.lineage.start
        if start is not None and start.base is None and self.base is not None:  # copies: never the caller's
            self.lineage = self.lineage.model_copy(update={"start": start.model_copy(update={"base": self.base})})
        return self

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


def flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A card's metrics one level flat, for a line or a table cell: {"stopped": {"reason": ...}}
    becomes {"stopped.reason": ...}."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        flat.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    return flat


def check_trained_on(adapter: ModelCard, base: ModelCard) -> None:
    """Refuse an adapter whose lineage says it was trained on other weights than `base` has now
    (a base re-imported or replaced under the same id): its updates would not fit them."""
    from agentkit.errors import BadInputError

    expected = adapter.lineage.base_weights_sha256
    if expected and expected != base.weights:
        raise BadInputError(
            f"Adapter {adapter.id!r} was trained on other weights than the {base.id!r} now in the registry "
            "(base sha256 differs).",
            fix=f"re-import the original base, or retrain the adapter on this {base.id!r}.",
        )

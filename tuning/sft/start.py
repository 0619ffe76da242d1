"""Where a later RLHF stage starts: a registry entry (a base, or an SFT / LoRA adapter of one)
loaded as one plain model, with the lineage that links the new stage to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import EntryKind, ModelCard, ModelTask, Registry
from agentkit.registry.adapters import fold_lora


@dataclass(frozen=True)
class StartPoint:
    entry: ModelCard  # the entry named in `base:` (a base, or an adapter)
    base: ModelCard  # the base entry that holds full weights
    merged_adapter: str | None  # the adapter folded into `base` to start from, if `entry` is one

    def lineage(self) -> dict[str, Any]:
        """What the new entry records about where it started."""
        return {
            "started_from": self.entry.id,
            "started_from_method": self.entry.method,
            "merged_adapter": self.merged_adapter,
            "base_weights_sha256": self.base.weights,
            "start_weights_sha256": self.entry.weights,
        }


def resolve_start(registry: Registry, entry_id: str) -> StartPoint:
    """Check from the cards that `entry_id` is a causal LM to start from (no weights read)."""
    card = registry.verify(entry_id)
    if card.kind is EntryKind.BASE:
        if card.task is not ModelTask.CAUSAL_LM:
            raise BadInputError(
                f"base {entry_id!r} is a {card.task.value} entry; RLHF stages start from a causal_lm model.",
                fix="use a chat model such as smollm2-135m-instruct, or the SFT entry trained from one.",
            )
        return StartPoint(card, card, None)
    if card.task is not ModelTask.CAUSAL_LM or card.base is None:
        raise BadInputError(
            f"adapter {entry_id!r} is a {card.task.value} adapter; RLHF stages start from a causal_lm model or adapter.",
            fix="use the SFT adapter (method: sft) or its base.",
        )
    return StartPoint(card, registry.verify(card.base), entry_id)


def load_start(registry: Registry, start: StartPoint, auto_class: Any, **kwargs: Any) -> tuple[Any, Any]:
    """(model, tokenizer): the base loaded with `auto_class` (AutoModelForCausalLM or
    AutoModelForSequenceClassification), with the start adapter merged in; the tokenizer saved
    with the start entry (the one its chat template trained with)."""
    from agentkit.registry.loading import load_tokenizer, load_weights

    model = load_weights(registry.path(start.base.id), auto_class, **kwargs)
    if start.merged_adapter:
        # Folded in, so the stage's own LoRA (or full training) sits on top of the SFT weights, and
        # "adapter disabled" (DPO's reference) means the SFT model, not the raw base.
        model = fold_lora(model, registry.path(start.merged_adapter))
    tokenizer = load_tokenizer(registry.path(start.entry.id))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer

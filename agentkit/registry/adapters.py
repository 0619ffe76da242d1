"""Adapter artifacts out of the registry: `export` (a folder plain PEFT loads; for vLLM see
vllm_export.py) and `merge` (a LoRA folded into its base, registered as a new base entry)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry.card import CARD_FILE, EntryKind, Lineage, ModelCard, ModelTask, SourceInfo, check_trained_on
from agentkit.registry.store import Registry

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
EXPORTED_CARD = "agentkit_card.json"  # the registry card, so lineage travels along


def _adapter_card(registry: Registry, adapter: str) -> ModelCard:
    card = registry.verify(adapter)
    if card.kind is not EntryKind.ADAPTER:
        raise BadInputError(f"{adapter!r} is a {card.kind.value} entry, not an adapter.", fix="pick an adapter id.")
    return card


def adapter_of(registry: Registry, adapter: str, base: str, *, task: ModelTask | None = None) -> ModelCard:
    """The card of `adapter`, checked from the cards alone to be an adapter of `base` (for `task` when
    given), trained on the weights `base` has now. The one check before an adapter runs on a base:
    the chat runtime, the GGUF LoRA converter and the classifier all call it."""
    card = registry.card(adapter)  # UnknownModelError lists the ids
    if card.kind is EntryKind.ADAPTER and card.base == base and (task is None or card.task is task):
        check_trained_on(card, registry.card(base))
        return card
    # "classification adapter" where a classifier is asked for; for chat (and any) simply "adapter".
    kind = "classification " if task is ModelTask.SEQUENCE_CLASSIFICATION else ""
    if card.kind is EntryKind.ADAPTER and card.base == base:
        fix = f"pick a {task.value if task else ''} adapter of {base!r} (`agentkit models list`)."
    elif card.kind is EntryKind.ADAPTER and card.task is (task or card.task):
        fix = f"use model={card.base!r}, the base it was trained on."
    elif card.kind is EntryKind.BASE and task is not None and card.task is task:
        fix = f"it is a model on its own: use model={adapter!r} with no adapter."
    else:
        fix = f"pick a {kind}adapter whose base is {base!r} (`agentkit models list`)."
    raise BadInputError(
        f"{adapter!r} is not a{'n' if not kind else ''} {kind}adapter of {base!r} (kind={card.kind.value}, "
        f"task={card.task.value}, base={card.base!r}).",
        fix=fix,
    )


def publish(target: Path, write: Callable[[Path], None]) -> Path:
    """Fill a staging folder beside `target` with `write(stage)`, then rename it to `target`: all or
    nothing. `target` must be new or empty."""
    target = Path(target).resolve()
    if target.exists() and not target.is_dir():
        raise BadInputError(f"{target} is a file, not a folder.", fix="pass a new or empty folder.")
    if target.exists() and any(target.iterdir()):
        raise BadInputError(f"{target} exists and is not empty.", fix="pass a new or empty folder.")
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        staging.mkdir(parents=True)
        write(staging)
        if target.exists():
            target.rmdir()
        os.rename(staging, target)
    finally:
        if staging.exists():  # write failed: leave nothing half-written behind
            shutil.rmtree(staging, ignore_errors=True)
    return target


def export_adapter(registry: Registry, adapter: str, target: Path) -> Path:
    """Copy an entry to `target`, all or nothing: an adapter as the folder plain PEFT loads (PEFT files,
    tokenizer, chat template); a base entry (a full fine-tune, a merge, an import) as the folder plain
    `transformers` loads (`AutoModelFor...from_pretrained(target)`), without the GGUF kept for llama.cpp."""
    card = registry.verify(adapter)
    source = registry.entry_dir(adapter)
    skipped = [CARD_FILE] + ([card.gguf.file] if card.gguf and card.kind is EntryKind.BASE else [])

    def write(stage: Path) -> None:
        shutil.copytree(source, stage, ignore=shutil.ignore_patterns(*skipped), dirs_exist_ok=True)
        shutil.copy2(source / CARD_FILE, stage / EXPORTED_CARD)

    return publish(target, write)


def fold_lora(model: Any, path: Any) -> Any:
    """`model` (loaded) with the LoRA adapter at `path` folded into its weights, in memory; what
    `merge_adapter` registers is this, saved. The adapter's task type is cleared first: PEFT picks its
    wrapper class from it, and a CAUSAL_LM adapter over a sequence classifier (an SFT adapter under a
    reward model) would get PeftModelForCausalLM, which needs generation methods the classifier
    lacks. The weights merge the same either way."""
    from peft import PeftConfig, PeftModel

    config = PeftConfig.from_pretrained(str(path))
    config.task_type = None
    return PeftModel.from_pretrained(model, str(path), config=config).merge_and_unload()


def merge_adapter(registry: Registry, adapter: str, output: str) -> ModelCard:
    """Fold a LoRA adapter into its base weights and register the result as base `output`."""
    card = _adapter_card(registry, adapter)
    if card.method != "lora":
        raise BadInputError(
            f"{adapter!r} is a {card.method} adapter; only LoRA updates can be folded into the weights.",
            fix="use the adapter per call (LocalChatModel(adapter=...)) instead of merging it.",
        )

    def write(stage: Path) -> dict[str, Any]:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        from agentkit.registry.loading import load_tokenizer, load_weights

        base_path = registry.path(card.base)
        registry.verify(card.base)
        auto = AutoModelForCausalLM if card.task is ModelTask.CAUSAL_LM else AutoModelForSequenceClassification
        base = load_weights(base_path, auto)
        merged = PeftModel.from_pretrained(base, str(registry.path(adapter))).merge_and_unload()
        merged.save_pretrained(stage, safe_serialization=True)
        load_tokenizer(registry.path(adapter), pad=False).save_pretrained(stage)
        return {
            "kind": "base",
            "task": card.task,
            "method": "merge",
            "source": SourceInfo(type="merge", ref=adapter),
            "chat_template": card.chat_template,
            "metrics": card.metrics,
            "lineage": Lineage(merged_from=adapter, merged_from_weights_sha256=card.weights,
                               base_weights_sha256=registry.card(card.base).weights, adapter_lineage=card.lineage),
        }

    return registry.create_entry(output, write)

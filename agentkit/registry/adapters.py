"""Adapter artifacts out of the registry: `export` (a folder plain PEFT loads) and `merge` (a LoRA
folded into its base, registered as a new base entry)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry.card import CARD_FILE, EntryKind, ModelCard, ModelTask, SourceInfo
from agentkit.registry.store import Registry


def _adapter_card(registry: Registry, adapter: str) -> ModelCard:
    card = registry.verify(adapter)
    if card.kind is not EntryKind.ADAPTER:
        raise BadInputError(f"{adapter!r} is a {card.kind.value} entry, not an adapter.", fix="pick an adapter id.")
    return card


def export_adapter(registry: Registry, adapter: str, target: Path) -> Path:
    """Copy the adapter (PEFT files, tokenizer, chat template) to `target`, all or nothing."""
    _adapter_card(registry, adapter)
    target = Path(target).resolve()
    if target.exists() and any(target.iterdir()):
        raise BadInputError(f"{target} exists and is not empty.", fix="pass a new or empty folder.")
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    shutil.copytree(registry.entry_dir(adapter), staging, ignore=shutil.ignore_patterns(CARD_FILE))
    shutil.copy2(registry.entry_dir(adapter) / CARD_FILE, staging / "agentkit_card.json")  # lineage travels along
    if target.exists():
        target.rmdir()
    os.rename(staging, target)
    return target


def merge_adapter(registry: Registry, adapter: str, output: str) -> ModelCard:
    """Fold a LoRA adapter into its base weights and register the result as base `output`."""
    card = _adapter_card(registry, adapter)
    if card.method != "lora":
        raise BadInputError(
            f"{adapter!r} is a {card.method} adapter; only LoRA updates can be folded into the weights.",
            fix="use the adapter per call (LocalChatModel(adapter=...)) instead of merging it.",
        )

    def write(stage: Path) -> dict[str, Any]:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        base_path = registry.path(card.base)
        registry.verify(card.base)
        auto = AutoModelForCausalLM if card.task is ModelTask.CAUSAL_LM else AutoModelForSequenceClassification
        base = auto.from_pretrained(base_path, use_safetensors=True, local_files_only=True, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(registry.path(adapter))).merge_and_unload()
        merged.save_pretrained(stage, safe_serialization=True)
        AutoTokenizer.from_pretrained(registry.path(adapter), local_files_only=True).save_pretrained(stage)
        return {
            "kind": "base",
            "task": card.task,
            "method": "merge",
            "source": SourceInfo(type="merge", ref=adapter),
            "chat_template": card.chat_template,
            "metrics": card.metrics,
            "lineage": {"adapter": adapter, "base": card.base, "adapter_weights_sha256": card.weights,
                        "adapter_lineage": card.lineage},  # fmt: skip
        }

    return registry.create_entry(output, write)

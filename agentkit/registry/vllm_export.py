"""`export --for vllm`: a LoRA adapter as a folder `vllm serve BASE --enable-lora --lora-modules NAME=DIR`
loads, and the command that serves it; what vLLM cannot serve is refused in one line."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import BadInputError
from agentkit.names import REGISTRY_ID
from agentkit.registry.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, EXPORTED_CARD, publish
from agentkit.registry.card import CARD_FILE, EntryKind, ModelCard, ModelTask, check_trained_on
from agentkit.registry.store import Registry

# ---- vLLM --------------------------------------------------------------------------------------
# What vLLM's LoRA loader accepts (vllm/lora/peft_helper.py `validate_legal`, vllm/lora/lora_model.py
# `from_local_checkpoint`, vllm/config/lora.py): PEFT LoRA only; no DoRA, no modules_to_save, bias
# "none"; r <= --max-lora-rank, which takes one of VLLM_MAX_LORA_RANKS and defaults to 16; weight
# keys `...lora_A.weight` / `...lora_B.weight` (`lora_embedding_A/B` for an embedding target).
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16
_VLLM_UNSUPPORTED = {  # adapter_config.json fields vLLM cannot serve (set = truthy), with why
    "use_dora": "it is DoRA (use_dora), which vLLM does not serve",
    "modules_to_save": "it trains whole modules (modules_to_save), which vLLM refuses in a LoRA",
    "lora_bias": "it trains a bias on lora_B (lora_bias), which vLLM has no place for",
    "trainable_token_indices": "it trains token embeddings (trainable_token_indices)",
    "rank_pattern": "it sets a per-module rank (rank_pattern); vLLM reads one r",
    "alpha_pattern": "it sets a per-module alpha (alpha_pattern); vLLM reads one lora_alpha",
    "target_parameters": "it targets parameters (target_parameters), not linear modules",
    "alora_invocation_tokens": "it is an activated LoRA (alora_invocation_tokens)",
    "use_qalora": "it is a QA-LoRA adapter (use_qalora)",
    "use_bdlora": "it is a block-diagonal LoRA (use_bdlora)",
    "arrow_config": "it is an Arrow routing adapter (arrow_config)",
    "layer_replication": "it replicates layers (layer_replication)",
}
_RETUNE = "re-tune it with `method: lora` and the default lora block (bias: none, use_dora: false)"
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.(?:lora_[AB]\.weight|lora_embedding_[AB])$")
# PEFT also saves the base's own embed_tokens / lm_head when they are LoRA targets (in case the
# vocabulary was resized); many vLLM releases refuse such a key ("... is unsupported LoRA weight",
# vllm-project/vllm#32599), newer ones skip it. Left out of the export: vLLM reads the base's own.
_BASE_COPY = re.compile(r"^base_model\.model\.(?P<module>.+)\.base_layer\.weight$")
_EMBEDDING_MODULES = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")


class VllmExport(BaseModel):
    """What `export --for vllm` wrote, and the `vllm serve` command that serves it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="the LoRA module name: `model` in OpenAI requests")
    adapter: str = Field(description="registry id of the adapter")
    target: Path = Field(description="the exported folder (absolute)")
    base: str = Field(description="registry id of the base")
    base_path: Path = Field(description="the base's HF folder, the model `vllm serve` loads")
    rank: int = Field(description="the adapter's LoRA rank r")
    max_lora_rank: int | None = Field(description="--max-lora-rank to pass; None: vLLM's default 16 holds")
    chat_template: Path | None = Field(
        default=None, description="--chat-template to pass: the adapter's own, when the base's differs"
    )
    notes: list[str] = Field(default_factory=list, description="what a reader should know, one line each")

    def command(self) -> list[str]:
        """`vllm serve BASE --enable-lora --lora-modules NAME=DIR [--max-lora-rank R] [--chat-template F]`."""
        argv = ["vllm", "serve", str(self.base_path), "--enable-lora"]
        argv += ["--lora-modules", f"{self.name}={self.target}"]
        if self.max_lora_rank is not None:
            argv += ["--max-lora-rank", str(self.max_lora_rank)]
        if self.chat_template is not None:
            argv += ["--chat-template", str(self.chat_template)]
        return argv

    def command_line(self) -> str:
        return shlex.join(self.command())


def vllm_max_lora_rank(rank: int, adapter: str) -> int | None:
    """The `--max-lora-rank` an adapter of rank `rank` needs: None up to vLLM's default (16), else
    the smallest value vLLM accepts that holds it."""
    if rank <= VLLM_DEFAULT_MAX_LORA_RANK:
        return None
    fits = [r for r in VLLM_MAX_LORA_RANKS if r >= rank]
    if not fits:
        largest = VLLM_MAX_LORA_RANKS[-1]
        _refuse_vllm(adapter, f"its rank r={rank} is above vLLM's largest --max-lora-rank ({largest})",
                     fix=f"re-tune it with `lora: {{r: {largest}}}` or less.")  # fmt: skip
    return fits[0]


def check_vllm_config(config: dict[str, Any], adapter: str, method: str | None) -> int:
    """Refuse, in one line naming the reason and the fix, an adapter_config.json vLLM cannot serve;
    return its rank."""
    kind = str(config.get("peft_type") or "").upper()
    if kind != "LORA":
        raise BadInputError(
            f"Adapter {adapter!r} is a {method or kind.lower() or 'non-LoRA'} adapter "
            f"(PEFT type {kind or 'unknown'}); vLLM serves LoRA adapters only.",
            fix="re-tune it with `method: lora` (tune.yaml) and export that one, "
            "or serve this one on one machine with `agentkit serve`.",
        )
    if config.get("use_dora"):
        _refuse_vllm(adapter, _VLLM_UNSUPPORTED["use_dora"], fix="re-tune it with `lora: {use_dora: false}`.")
    if config.get("bias", "none") != "none":
        _refuse_vllm(adapter, f"it trains base biases (bias={config['bias']!r}), which vLLM does not serve",
                     fix="re-tune it with `lora: {bias: none}`.")  # fmt: skip
    for field, why in _VLLM_UNSUPPORTED.items():
        if config.get(field):
            _refuse_vllm(adapter, why)
    rank = config.get("r")
    if not isinstance(rank, int) or rank <= 0 or not float(config.get("lora_alpha") or 0) > 0:
        _refuse_vllm(adapter, f"its adapter_config.json has no positive r and lora_alpha (r={rank!r})")
    return rank


def export_vllm(registry: Registry, adapter: str, target: Path, *, name: str | None = None) -> VllmExport:
    """Write LoRA adapter `adapter` as a folder `vllm serve BASE --enable-lora --lora-modules NAME=DIR`
    loads (adapter_config.json + adapter_model.safetensors, tokenizer files), all or nothing.

    The result names the base's folder (the model vLLM loads) and the exact command. Adapters vLLM
    cannot serve (not LoRA, DoRA, modules_to_save, a bias, r above 512) are refused in one line.
    """
    card = registry.verify(adapter)
    if card.kind is not EntryKind.ADAPTER:
        raise BadInputError(
            f"{adapter!r} is a {card.kind.value} entry, not an adapter; vLLM loads a base folder as it is.",
            fix=f"serve it with `vllm serve {shlex.quote(str(registry.entry_dir(adapter).resolve()))}`, "
            "or pick an adapter id.",
        )
    if card.task is not ModelTask.CAUSAL_LM:
        raise BadInputError(
            f"Adapter {adapter!r} is a {card.task.value} adapter; vLLM's OpenAI server serves LoRA on "
            "causal_lm (chat) models here.",
            fix="use it on this machine (`agentkit classify` / `agentkit serve`), or tune a causal_lm LoRA.",
        )
    source = registry.entry_dir(adapter)
    config = _read_config(source, adapter)
    rank = check_vllm_config(config, adapter, card.method)
    max_lora_rank = vllm_max_lora_rank(rank, adapter)
    base_card = _base_of(registry, card)
    base_path = registry.entry_dir(base_card.id).resolve()
    drop, notes = _check_weights(source / ADAPTER_WEIGHTS, adapter, base_path)
    target = Path(target).resolve()
    if "=" in str(target) or "," in str(target):  # vLLM splits `--lora-modules NAME=DIR` at '=' and ','
        raise BadInputError(f"{target} holds '=' or ',', which `vllm serve --lora-modules NAME=DIR` cannot parse.",
                            fix="export to a folder whose path has neither.")  # fmt: skip
    name = REGISTRY_ID.check(name) if name is not None else adapter  # no '=' or space in NAME=DIR
    template = card.chat_template if card.chat_template != base_card.chat_template else None
    skip = {CARD_FILE, ADAPTER_CONFIG, ADAPTER_WEIGHTS} | ({card.gguf.file} if card.gguf else set())

    def write(stage: Path) -> None:
        out = {**config, "base_model_name_or_path": str(base_path), "inference_mode": True}
        text = json.dumps(out, indent=2, sort_keys=True) + "\n"
        (stage / ADAPTER_CONFIG).write_text(text, encoding="utf-8")
        if drop:
            _copy_without(source / ADAPTER_WEIGHTS, stage / ADAPTER_WEIGHTS, drop)
        else:
            shutil.copy2(source / ADAPTER_WEIGHTS, stage / ADAPTER_WEIGHTS)
        for item in source.iterdir():  # tokenizer files (vLLM may load an adapter's own), training logs
            if item.is_file() and item.name not in skip and not item.name.endswith(".gguf"):
                shutil.copy2(item, stage / item.name)
        if template is not None:
            (stage / "chat_template.jinja").write_text(template, encoding="utf-8")
        shutil.copy2(source / CARD_FILE, stage / EXPORTED_CARD)

    publish(target, write)
    if drop:
        notes.insert(0, f"left out {len(drop)} copied base weight(s) PEFT saves with embedding targets "
                     f"({', '.join(sorted(drop))}); vLLM reads the base's own")  # fmt: skip
    return VllmExport(
        name=name, adapter=adapter, target=target, base=base_card.id, base_path=base_path, rank=rank,
        max_lora_rank=max_lora_rank, notes=notes,
        chat_template=None if template is None else target / "chat_template.jinja",
    )  # fmt: skip


def _refuse_vllm(adapter: str, why: str, *, fix: str | None = None) -> NoReturn:
    raise BadInputError(
        f"Adapter {adapter!r} cannot be served by vLLM: {why}.",
        fix=fix or f"{_RETUNE}, or serve this one on one machine with `agentkit serve`.",
    )


def _read_config(folder: Path, adapter: str) -> dict[str, Any]:
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(
            f"Adapter {adapter!r} has no readable {ADAPTER_CONFIG} ({type(exc).__name__}).",
            fix=f"restore the file, or `agentkit models rm {adapter}` and train it again.",
        ) from None
    if not isinstance(config, dict):
        _refuse_vllm(adapter, f"its {ADAPTER_CONFIG} is not a JSON object")
    return config


def _base_of(registry: Registry, card: ModelCard) -> ModelCard:
    """The adapter's base entry, intact, the weights it was trained on, and an HF folder vLLM loads."""
    if not card.base:
        _refuse_vllm(card.id, "its card names no base model",
                     fix=f"`agentkit models rm {card.id}` and train it again.")  # fmt: skip
    base = registry.verify(card.base)
    check_trained_on(card, base)
    if not (registry.entry_dir(card.base) / "config.json").is_file():
        _refuse_vllm(card.id, f"its base {card.base!r} has no config.json, so vLLM cannot load it",
                     fix="import the base as a Hugging Face folder (`agentkit models import DIR`).")
    return base


def _check_weights(path: Path, adapter: str, base_path: Path) -> tuple[set[str], list[str]]:
    """Every key vLLM reads is a LoRA A/B; returns (base-weight copies to leave out, notes)."""
    from safetensors import safe_open

    if not path.is_file():
        _refuse_vllm(adapter, f"it has no {ADAPTER_WEIGHTS}")
    vocab = _vocab_size(base_path)
    modules: set[str] = set()
    copies: dict[str, str] = {}
    with safe_open(str(path), framework="np") as handle:  # keys and shapes only: no tensor is read
        for key in handle.keys():
            if match := _LORA_KEY.match(key):
                modules.add(match["module"])
            elif (match := _BASE_COPY.match(key)) and _leaf(match["module"]) in _EMBEDDING_MODULES:
                shape = handle.get_slice(key).get_shape()
                if vocab is not None and shape and shape[0] != vocab:
                    _refuse_vllm(adapter, f"it carries a resized {match['module']} ({shape[0]} rows, "
                                 f"the base has {vocab}), which vLLM cannot serve")  # fmt: skip
                copies[key] = match["module"]
            else:
                _refuse_vllm(adapter, f"it holds {key!r}, which is not a LoRA A/B weight vLLM loads")
    if not modules:
        _refuse_vllm(adapter, "it holds no LoRA weights")
    orphans = sorted(set(copies.values()) - modules)
    if orphans:
        _refuse_vllm(adapter, f"it holds a full {orphans[0]} weight that is not a LoRA target")
    embedded = sorted({_leaf(m) for m in modules} & set(_EMBEDDING_MODULES))
    notes = []
    if embedded:
        notes.append(f"it puts LoRA on {', '.join(embedded)}: vLLM serves that only for models that declare "
                     "embedding LoRA modules; if `vllm serve` refuses it, re-tune with target_modules "
                     "that leave them out")  # fmt: skip
    return set(copies), notes


def _leaf(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def _vocab_size(base_path: Path) -> int | None:
    try:
        config = json.loads((base_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    return vocab if isinstance(vocab, int) else None


def _copy_without(source: Path, target: Path, drop: set[str]) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys() if key not in drop}
        metadata = handle.metadata()
    save_file(tensors, str(target), metadata=metadata)

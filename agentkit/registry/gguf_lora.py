"""GGUF LoRA files for llama.cpp: a registry LoRA adapter (PEFT safetensors) converted once, on
first use, into `adapter.gguf` in its entry, recorded as the card's `gguf`; the PEFT files stay."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any, NoReturn

from agentkit.errors import BadInputError
from agentkit.registry.adapters import adapter_of
from agentkit.registry.card import GgufFile, ModelCard
from agentkit.registry.gguf_header import read_gguf_header
from agentkit.registry.store import Registry, sha256_file

# The file, as llama.cpp's src/llama-adapter.cpp reads it: general.type "adapter", adapter.type
# "lora", adapter.lora.alpha; for each base tensor `<gguf name>.weight` a pair `.weight.lora_a`
# (PyTorch shape (r, in), = PEFT lora_A) and `.weight.lora_b` ((out, r), = PEFT lora_B). llama.cpp
# adds scale * alpha / r * B @ (A @ x), reading r from lora_b's shape, per request `scale`.
ADAPTER_GGUF = "adapter.gguf"
CONVERTER_VERSION = 1  # recorded in the card; bump when the written file changes

# GGUF architectures whose attention linears map 1:1 from Hugging Face layout. For "llama",
# convert_hf_to_gguf reorders q/k rows for llama.cpp's rope and transformers' GGUF loader undoes it
# (so our de-quantised HF weights and any LoRA trained on them are in HF order): the LoRA's B rows
# of those tensors must be reordered the same way. value: GGUF tensor -> metadata key of its heads.
ROPE_ROW_ORDER: dict[str, dict[str, str]] = {
    "llama": {"attn_q": "attention.head_count", "attn_k": "attention.head_count_kv"},
    "qwen2": {},  # rope on half-split rows in both layouts (NEOX): nothing to reorder
}

# adapter_config.json fields that make an adapter something llama.cpp's LoRA cannot run, with why.
_UNSUPPORTED = {
    "use_dora": "it is DoRA (a learned per-column magnitude; llama.cpp applies B @ A only)",
    "modules_to_save": "it trains whole modules (modules_to_save), which a GGUF LoRA cannot carry",
    "trainable_token_indices": "it trains token embeddings (trainable_token_indices)",
    "lora_bias": "it trains a bias on lora_B (lora_bias), which llama.cpp's LoRA has no place for",
    "alpha_pattern": "it sets a per-module alpha (alpha_pattern); a GGUF LoRA has one alpha",
    "target_parameters": "it targets parameters (target_parameters), not linear modules",
    "fan_in_fan_out": "its weights are stored transposed (fan_in_fan_out, GPT-2 Conv1D)",
    "alora_invocation_tokens": "it is an activated LoRA (alora_invocation_tokens)",
    "use_qalora": "it is a QA-LoRA adapter (use_qalora)",
    "use_bdlora": "it is a block-diagonal LoRA (use_bdlora)",
    "arrow_config": "it is an Arrow routing adapter (arrow_config)",
    "layer_replication": "it replicates layers (layer_replication)",
}
# PEFT saves `base_model.model.<module>.lora_A.weight`; anything else (lora_embedding_A for an
# embedding target, lora_magnitude_vector for DoRA, a bias) has no GGUF LoRA form.
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")
_USE_TRANSFORMERS = "use engine: transformers (or engine: auto, which then picks it) for this adapter."


def ensure_gguf_lora(registry: Registry, adapter: str, *, base: str, base_gguf: Path) -> Path:
    """The GGUF LoRA of registry adapter `adapter` for base entry `base` run from `base_gguf`:
    converted on the first call (SmolLM2 all-linear r=8: 0.2 s + loading torch), then read from the card.

    Raises BadInputError (one line, exit 2) for an adapter llama.cpp cannot run or one whose base
    is not `base` / does not fit `base_gguf`. The file is written atomically into the entry and
    recorded on the card (`gguf`, `lineage.gguf_lora`) after it is complete; a file made for a
    GGUF of another layout, from an older converter, or damaged, is converted again.
    """
    card = adapter_of(registry, adapter, base)
    registry.verify(adapter)  # the PEFT files are the source of truth: convert only intact ones
    folder = registry.entry_dir(adapter)
    layout = base_layout(base_gguf)
    if _usable(folder, card, layout):
        return folder / card.gguf.file  # type: ignore[union-attr]
    # Not the entry lock: update_card takes that one, and a file lock is not re-entrant.
    with registry._lock(f"gguf-lora-{adapter}"):
        card = registry.card(adapter)
        if _usable(folder, card, layout):  # another process converted it while we waited
            return folder / card.gguf.file  # type: ignore[union-attr]
        facts = convert_lora(folder, base_gguf, folder / ADAPTER_GGUF, adapter_id=adapter)
        record = GgufFile(file=ADAPTER_GGUF, sha256=sha256_file(folder / ADAPTER_GGUF))
        facts |= {"base": base, "base_gguf": base_gguf.name, "base_layout": layout}
        registry.update_card(adapter, gguf=record, lineage=card.lineage.model_copy(update={"gguf_lora": facts}))
    return folder / ADAPTER_GGUF


def base_layout(base_gguf: Path) -> str:
    """A fingerprint of what a GGUF LoRA depends on in its base GGUF: architecture, head and block
    counts, tensor names and shapes -- not the weights, so a re-quantised base keeps its LoRA."""
    header = read_gguf_header(base_gguf)
    arch = header.metadata.get("general.architecture")
    keys = ("block_count", "attention.head_count", "attention.head_count_kv")
    counts = [header.metadata.get(f"{arch}.{k}") for k in keys]
    text = json.dumps([arch, counts, sorted(header.tensors.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_convertible(config: dict[str, Any], adapter_id: str) -> None:
    """Refuse, in one line naming the reason, a PEFT config llama.cpp's LoRA cannot run."""
    kind = str(config.get("peft_type") or "").upper()
    if kind != "LORA":
        _refuse(adapter_id, f"it is a {kind.lower() or 'non-LoRA'} adapter, not a LoRA")
    for field, why in _UNSUPPORTED.items():
        if config.get(field):
            _refuse(adapter_id, why)
    if config.get("bias", "none") != "none":
        _refuse(adapter_id, f"it trains base biases (bias={config['bias']!r}), which are not in a GGUF LoRA")
    if not float(config.get("lora_alpha") or 0) > 0:
        _refuse(adapter_id, "its lora_alpha is not positive (llama.cpp reads alpha 0 as 'no scaling')")


def convert_lora(adapter_dir: Path, base_gguf: Path, target: Path, *, adapter_id: str) -> dict[str, Any]:
    """Write the PEFT LoRA in `adapter_dir` as a GGUF LoRA for `base_gguf` at `target` (written
    under a temporary name, renamed when complete). Returns what the card records about it."""
    import gguf

    config = _read_config(adapter_dir, adapter_id)
    check_convertible(config, adapter_id)
    header = read_gguf_header(base_gguf)
    arch = str(header.metadata.get("general.architecture"))
    if arch not in ROPE_ROW_ORDER:
        _refuse(adapter_id, f"its base GGUF {base_gguf.name} is a {arch!r} model; GGUF LoRA conversion "
                f"covers {', '.join(sorted(ROPE_ROW_ORDER))}")  # fmt: skip
    n_blocks = int(_meta(header, f"{arch}.block_count", adapter_id))
    names = gguf.get_tensor_name_map(_model_arch(arch), n_blocks)
    alpha = float(config["lora_alpha"])
    pairs = _read_pairs(adapter_dir, adapter_id)
    tensors: list[tuple[str, Any]] = []
    for module, (a, b) in sorted(pairs.items()):
        name = names.get_name(module)  # "model.layers.3.self_attn.q_proj" -> "blk.3.attn_q"
        if name is None or f"{name}.weight" not in header.tensors:
            would_be = f" (would be {name}.weight)" if name else ""
            why = f"llama.cpp has no tensor for its target module {module!r} in {base_gguf.name}{would_be}"
            _refuse(adapter_id, why)
        n_in, n_out = header.tensors[f"{name}.weight"][:2]  # ggml order: (in, out)
        if a.shape != (a.shape[0], n_in) or b.shape != (n_out, a.shape[0]):
            raise BadInputError(
                f"Adapter {adapter_id!r} does not fit {base_gguf.name}: {module} has lora_A {tuple(a.shape)} "
                f"and lora_B {tuple(b.shape)}, the GGUF's {name}.weight is (out={n_out}, in={n_in}).",
                fix="use the adapter with the base it was trained on (its card's `base`).",
            )
        # llama.cpp applies alpha / r; rsLoRA trained with alpha / sqrt(r): B carries the sqrt(r).
        b = b * math.sqrt(b.shape[1]) if config.get("use_rslora") else b
        heads_key = ROPE_ROW_ORDER[arch].get(name.rsplit(".", 1)[-1])
        if heads_key is not None:
            b = rope_rows_to_gguf(b, int(_meta(header, f"{arch}.{heads_key}", adapter_id)))
        tensors += [(f"{name}.weight.lora_a", a), (f"{name}.weight.lora_b", b)]
    _write(target, arch, alpha, adapter_id, tensors)
    return {"converter": CONVERTER_VERSION, "arch": arch, "alpha": alpha, "modules": len(pairs),
            "rope_rows_reordered": bool(ROPE_ROW_ORDER[arch])}  # fmt: skip


def rope_rows_to_gguf(rows: Any, n_heads: int) -> Any:
    """Reorder the output rows of a q/k projection (or its LoRA B) from HF to llama.cpp order.

    Per head of d rows, HF rotates row i with row i + d/2 (two halves); llama.cpp's llama rope
    rotates adjacent rows 2i, 2i + 1. So the head's (2, d/2) grid of rows is read column-first.
    """
    out = rows.shape[0]
    half = out // n_heads // 2
    return rows.reshape(n_heads, 2, half, -1).transpose(0, 2, 1, 3).reshape(rows.shape)  # (out, r)


# ---- helpers ---------------------------------------------------------------------------------------
def _usable(folder: Path, card: ModelCard, layout: str) -> bool:
    """The recorded GGUF LoRA is there, intact, from this converter and for this base layout."""
    kept = card.gguf
    facts = card.lineage.gguf_lora or {}
    if kept is None or facts.get("converter") != CONVERTER_VERSION or facts.get("base_layout") != layout:
        return False
    file = folder / kept.file
    return file.is_file() and sha256_file(file) == kept.sha256  # a few MB: ~10 ms


def _read_config(adapter_dir: Path, adapter_id: str) -> dict[str, Any]:
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(
            f"Adapter {adapter_id!r} has no readable adapter_config.json ({type(exc).__name__}).",
            fix=f"restore the file, or `agentkit models rm {adapter_id}` and train it again.",
        ) from None
    return config if isinstance(config, dict) else {}


def _read_pairs(adapter_dir: Path, adapter_id: str) -> dict[str, tuple[Any, Any]]:
    """module -> (lora_A (r, in), lora_B (out, r)) as float32 numpy arrays."""
    import torch  # safetensors' numpy loader cannot read bf16
    from safetensors import safe_open

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        _refuse(adapter_id, "it has no adapter_model.safetensors")
    found: dict[str, dict[str, Any]] = {}
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():
            match = _KEY.match(key)
            if match is None:
                _refuse(adapter_id, f"it holds {key!r}, which has no GGUF LoRA form")
            tensor = handle.get_tensor(key).to(torch.float32).numpy()
            found.setdefault(match["module"], {})[match["ab"]] = tensor
    if not found:
        _refuse(adapter_id, "it holds no LoRA weights")
    broken = [m for m, ab in found.items() if set(ab) != {"A", "B"}]
    if broken:
        _refuse(adapter_id, f"module {broken[0]!r} has only one of lora_A / lora_B")
    return {m: (ab["A"], ab["B"]) for m, ab in found.items()}


def _meta(header: Any, key: str, adapter_id: str) -> Any:
    if key not in header.metadata:
        _refuse(adapter_id, f"its base GGUF has no {key!r} metadata")
    return header.metadata[key]


def _model_arch(arch: str) -> Any:
    import gguf

    return {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch]


def _write(target: Path, arch: str, alpha: float, adapter_id: str, tensors: list[tuple[str, Any]]) -> None:
    import gguf
    import numpy as np

    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(adapter_id)
        for name, array in tensors:
            # f32, as PEFT trained them: SmolLM2 all-linear r=8 is 9.8 MB, and f16 would add a
            # rounding the transformers engine does not have.
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _refuse(adapter_id: str, why: str) -> NoReturn:
    raise BadInputError(
        f"Adapter {adapter_id!r} cannot be converted to a GGUF LoRA for llama.cpp: {why}.",
        fix=_USE_TRANSFORMERS,
    )

"""Turn what a user has on disk (an HF model folder, a GGUF file) into registry entry files.

Every function here writes into a staging folder that `Registry.create_entry` publishes, and
returns the card fields it learned (task, chat template, source).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError, UnsafeWeightsError
from agentkit.registry.card import ModelTask, SourceInfo
from agentkit.registry.files import PICKLE_SUFFIXES, WEIGHT_SUFFIXES, sha256_file

Progress = Callable[[str], None] | None

_CONVERT_HINT = (
    "convert it once, only if you trust its origin: python -c \"from transformers import "
    "AutoModel; AutoModel.from_pretrained('{src}').save_pretrained('{src}-safetensors')\" "
    "then import that folder."
)


def refuse_pickles(folder: Path) -> None:
    """Refuse folders whose only weights are pickles: loading them can run arbitrary code."""
    has_safe = any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir())
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not has_safe:
        raise UnsafeWeightsError(
            f"{folder} holds pickle weights ({', '.join(pickles)}) and no .safetensors; "
            "agentkit loads safetensors only.",
            fix=_CONVERT_HINT.format(src=folder),
        )
    if not has_safe:
        raise BadInputError(
            f"{folder} holds no .safetensors weights.",
            fix="point at a Hugging Face model folder (config.json + *.safetensors) or a .gguf file.",
        )


def detect_task(folder: Path) -> ModelTask:
    if (folder / "modules.json").is_file():  # a sentence-transformers folder
        return ModelTask.EMBEDDING
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(
            f"{folder} has no config.json.", fix="point at a Hugging Face model folder."
        ) from None
    archs = " ".join(config.get("architectures") or [])
    if "ForCausalLM" in archs or "LMHeadModel" in archs:
        return ModelTask.CAUSAL_LM
    if "ForSequenceClassification" in archs:
        return ModelTask.SEQUENCE_CLASSIFICATION
    return ModelTask.EMBEDDING


def read_chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    tok_cfg = folder / "tokenizer_config.json"
    if tok_cfg.is_file():
        template = json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def copy_hf_folder(src: Path, stage: Path, *, source: SourceInfo | None = None, link: bool = False) -> dict[str, Any]:
    """Copy a Hugging Face folder, leaving pickles behind; nested folders (1_Pooling) come too.

    `link`: hard-link the top-level safetensors instead of copying them (one copy on disk for two
    entries, e.g. a registry's base shared read-only by many test homes). Only for a source nothing
    writes in place, such as another registry entry: the registry replaces files, never edits them.
    Falls back to a copy across file systems."""
    src = Path(src).resolve()
    if not src.is_dir():
        raise BadInputError(f"{src} is not a folder.", fix="pass a model folder or a .gguf file.")
    refuse_pickles(src)
    for item in src.iterdir():
        if item.suffix in PICKLE_SUFFIXES or item.name.startswith("."):
            continue
        target = stage / item.name
        if item.is_dir():
            shutil.copytree(item, target, ignore=shutil.ignore_patterns(*(f"*{s}" for s in PICKLE_SUFFIXES)))
        elif link and item.suffix in WEIGHT_SUFFIXES:
            try:
                os.link(item, target)
            except OSError:  # another file system (or one without hard links)
                shutil.copy2(item, target)
        else:
            shutil.copy2(item, target)
    return {
        "kind": "base",
        "task": detect_task(stage),
        "method": "import",
        "source": source or SourceInfo(type="hf_folder", ref=str(src)),
        "chat_template": read_chat_template(stage),
    }


_GGUF_FIX = "re-download or re-export it (a partial download is the usual cause)."


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def check_gguf(gguf: Path) -> None:
    """Parse the GGUF header, metadata and tensor table, so a corrupt or truncated file fails as
    bad input naming it before torch loads (~3.5 s for SmolLM2's 98 MB, most of it the 49k-token
    vocabulary; the conversion after it takes ~20 s). gguf's reader raises ValueError, IndexError, ..."""
    from gguf import GGUFReader

    try:
        GGUFReader(gguf)
    except Exception as exc:  # noqa: BLE001 - any failure to parse it is the file's fault
        raise BadInputError(f"{gguf}: not a valid GGUF file ({_one_line(exc)}).", fix=_GGUF_FIX) from None


@contextmanager
def _reading_gguf(gguf: Path) -> Iterator[None]:
    """What check_gguf cannot see: transformers refusing the file's contents (an architecture or
    quantisation it does not support) raises ValueError; that names the file too."""
    try:
        yield
    except (ValueError, IndexError) as exc:
        raise BadInputError(
            f"{gguf}: transformers cannot read this GGUF file ({_one_line(exc)}).",
            fix=_GGUF_FIX.removesuffix(".") + "; if the file is intact, convert the model to "
            "safetensors with its original tooling and import that folder.",
        ) from None


def convert_gguf(
    gguf: Path, stage: Path, *, source: SourceInfo | None = None, progress: Progress = None
) -> dict[str, Any]:
    """De-quantise a GGUF causal LM once and save it as an fp32 safetensors folder.

    transformers flags a GGUF-loaded model as quantised and refuses `save_pretrained`, so we
    rebuild a clean model from its config on the meta device and move the tensors over.
    """
    gguf = Path(gguf).resolve()
    if not gguf.is_file() or gguf.suffix != ".gguf":
        raise BadInputError(f"{gguf} is not a .gguf file.", fix="pass the path of a .gguf file.")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    say = progress or (lambda _msg: None)
    say(f"reading tokenizer from {gguf.name}")
    with _reading_gguf(gguf):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        say(f"de-quantising {gguf.name} to fp32 (once; later loads use safetensors)")
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), assign=True, strict=False)
    clean.tie_weights()
    # strict=False lets tied weights (lm_head = embeddings) be absent; a saved tensor still on the
    # meta device was never loaded, and writing it would publish an incomplete model. (Computed
    # buffers such as rotary inv_freq are not saved, so they are not in state_dict.)
    missing = [n for n, t in clean.state_dict().items() if t.is_meta]
    if missing:
        raise BadInputError(
            f"{gguf.name}: tensors {', '.join(missing[:5])} were not found in the GGUF file.",
            fix="convert this model with its original tooling to safetensors and import that folder.",
        )
    clean.generation_config = loaded.generation_config
    say("writing safetensors")
    clean.save_pretrained(stage, safe_serialization=True)
    tokenizer.save_pretrained(stage)
    return {
        "kind": "base",
        "task": ModelTask.CAUSAL_LM,
        "method": "gguf-dequant",
        "source": source or SourceInfo(type="gguf", ref=str(gguf), sha256=sha256_file(gguf)),
        "chat_template": tokenizer.chat_template,
    }


def keep_gguf(gguf: Path, stage: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Keep the imported GGUF in the entry (`card.gguf`), as the built-ins do, so the llama.cpp
    engine still runs it after the user moves or deletes the original: a hard link where the
    registry shares the file system (the same bytes convert_gguf hashed into `source`), else a
    copy, hashed again."""
    from agentkit.registry.card import GgufFile

    target = stage / gguf.name
    try:
        os.link(gguf, target)
        digest = fields["source"].sha256
    except OSError:  # another file system, or links not allowed
        shutil.copy2(gguf, target)
        digest = sha256_file(target)
    return fields | {"gguf": GgufFile(file=gguf.name, sha256=digest)}


def import_path(path: Path, stage: Path, progress: Progress = None) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path} does not exist.", fix="check the path.")
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise UnsafeWeightsError(
                f"{path} is a pickle file; agentkit loads safetensors only.",
                fix=_CONVERT_HINT.format(src=path.parent),
            )
        if path.suffix == ".gguf":
            check_gguf(path.resolve())  # a user's file: refuse a corrupt one before torch is imported
        return keep_gguf(path.resolve(), stage, convert_gguf(path, stage, progress=progress))
    return copy_hf_folder(path, stage)


def default_id_for(path: Path) -> str:
    """A registry id from a file or folder name: 'SmolLM2-135M.Q4_1.gguf' -> 'smollm2-135m.q4_1'."""
    stem = Path(path).name.removesuffix(".gguf").lower()
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-._")
    return cleaned[:64] or "model"

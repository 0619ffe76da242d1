"""Files of the registry, with no registry behind them: which weight formats it takes, their sha256,
and the one way its JSON is written (temp file, fsync, rename). A leaf module: importer.py and
store.py both read it, so neither imports the other."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Hash in 8 MiB blocks: 540 MB of fp32 SmolLM2 hashes in ~0.4 s; larger blocks buy nothing.
_HASH_BLOCK = 8 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def hash_weights(folder: Path) -> dict[str, str]:
    """sha256 of every safetensors file under `folder` (shards, submodules such as 2_Dense/, and
    the shard index, which says which file holds which tensor), keyed by relative path."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".safetensors.index.json"))]
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON next to `path`, fsync, then rename over it: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)

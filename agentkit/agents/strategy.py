"""`strategy: auto`: which loop a model gets. Plan-and-act for models that can plan, guided below.

The threshold is a measurement, not a guess (README, "Agents: strategies"; bench/agent_eval.py
--strategy): on the held-out goals SmolLM2-135M reached more with `guided` than with `plan`, and
Qwen2.5-Coder-0.5B more with `plan` than with `guided` or `free`. Models from remote providers
(`{provider: openai, ...}`) are taken as capable; a chat model object passed in directly is of
unknown size, so it keeps `guided` unless the caller names a strategy.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

STRATEGIES = ("auto", "plan", "guided", "free")
# Between SmolLM2-135M (guided wins) and Qwen2.5-Coder-0.5B (plan wins): see the module docstring.
PLAN_MIN_PARAMS = 300_000_000


def parameter_count(folder: Path) -> int:
    """Parameters in the *.safetensors files of a folder, from their headers only (no weights read)."""
    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info.get("shape", []):
                    count *= int(dim)
                total += count
    return total


def resolve_strategy(strategy: str, spec: Any, chat_model: Any) -> str:
    """The loop a run uses: `strategy` itself unless it is "auto"."""
    if strategy != "auto":
        return strategy
    from agentkit.models.chat_model import LocalChatModel
    from agentkit.models.provider import LOCAL, ModelSpec

    if isinstance(spec, ModelSpec) and spec.provider != LOCAL:
        return "plan"
    if isinstance(chat_model, LocalChatModel):
        registry = chat_model._registry()
        base, _ = registry.resolve_chat(chat_model.model, chat_model.adapter)
        return "plan" if parameter_count(registry.path(base)) >= PLAN_MIN_PARAMS else "guided"
    return "guided"

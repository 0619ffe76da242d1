"""Lazy package exports: a module `__getattr__` that imports each public name on first use, so
`import agentkit.<package>` (and `agentkit --help`) does not load torch, langgraph or faiss."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """`__getattr__ = lazy_exports(__name__, {"Name": "defining.module", ...})` in a package."""

    def __getattr__(name: str) -> Any:
        if name in names:
            import importlib

            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__

"""agentkit: LangChain applications on models you fine-tune yourself, on your own machine.

Offline by design: models come from the local registry, never from a hub at run time.
"""

from __future__ import annotations

import os

from agentkit.lazy import lazy_exports

# Nothing in agentkit may download from a hub; make transformers / sentence-transformers agree.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"


# `from agentkit import Agent` without importing langgraph / torch at `import agentkit`.
__getattr__ = lazy_exports(__name__, {"Agent": "agentkit.agents.agent"})

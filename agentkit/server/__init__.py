"""`agentkit serve`: an OpenAI-compatible HTTP server (chat completions, models, embeddings) over
the local registry, with the adapter chosen per request on one loaded base.

Imports are lazy so that `import agentkit.server` (and `agentkit --help`) does not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit.lazy import lazy_exports

if TYPE_CHECKING:
    from agentkit.server.app import create_app
    from agentkit.server.runner import run, serve_in_thread
    from agentkit.server.settings import ServeSettings

_LAZY = {
    "create_app": "agentkit.server.app",
    "run": "agentkit.server.runner",
    "serve_in_thread": "agentkit.server.runner",
    "ServeSettings": "agentkit.server.settings",
}
__all__ = ["ServeSettings", "create_app", "run", "serve_in_thread"]


__getattr__ = lazy_exports(__name__, _LAZY)

"""Running the app: `run` in the foreground (the CLI), `serve_in_thread` in the background (tests,
benchmarks) on a port the OS picks, stopped when the block ends."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agentkit.errors import AgentkitError
from agentkit.server.settings import ServeSettings


def run(settings: ServeSettings) -> None:
    """Serve until Ctrl-C."""
    import uvicorn

    from agentkit.server.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=5)  # fmt: skip


@dataclass
class RunningServer:
    base_url: str  # http://127.0.0.1:PORT/v1, what `openai.OpenAI(base_url=...)` takes
    app: Any  # the FastAPI app: app.state.chat.served counts the completions served


@contextmanager
def serve_in_thread(settings: ServeSettings | None = None, *, start_timeout_s: float = 30.0,
                    **app_options: Any) -> Iterator[RunningServer]:  # fmt: skip
    """The app under uvicorn in a daemon thread; `settings.port` 0 (the default here) picks a free port."""
    import uvicorn

    from agentkit.server.app import create_app

    settings = settings or ServeSettings(port=0)
    app = create_app(settings, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="agentkit-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise AgentkitError(f"The server did not start on {settings.host}:{settings.port}.",
                                fix="pick another port, or check that the host is an address of this machine.")  # fmt: skip
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    try:
        yield RunningServer(f"http://{host}:{port}/v1", app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def wait_healthy(url: str, process: subprocess.Popen[bytes], *, timeout_s: float = 60.0,
                 output: Callable[[], str] = lambda: "") -> None:  # fmt: skip
    """Wait until `agentkit serve`, started as `process`, answers GET {url}/health with 200.

    If the process exits or `timeout_s` passes first, it is killed and AgentkitError carries the
    tail of `output()` (its log), so a server that did not come up says why."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            raise AgentkitError(f"agentkit serve did not come up on {url} (exit {process.returncode}):\n"
                                f"{output()[-3000:]}", fix="read the server's output above.")  # fmt: skip
        time.sleep(0.2)

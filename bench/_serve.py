"""Shared by bench/serve_*.py and bench/finetune_jobs.py: `agentkit serve` as a real process on a
free loopback port, stopped when the block ends and killed past a deadline (or when the bench
process dies), so a benchmark never leaves a server behind."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agentkit.server.runner import wait_healthy

KEY = "sk-agentkit-bench"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_env(**extra: str) -> dict[str, str]:
    """The environment a bench server (and a bench's own children) run with: offline, and waiting
    OpenMP threads sleep rather than spin on the 2 shared cores (models/threads.py)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "AGENTKIT_API_KEY": KEY, **extra}  # fmt: skip
    env.pop("AGENTKIT_DEBUG", None)
    return env


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM when the bench process dies
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Served:
    base_url: str  # http://127.0.0.1:PORT/v1
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system


@contextmanager
def agentkit_serve(*options: str, home: str | Path | None = None, max_runtime_s: float = 1800,
                   start_timeout_s: float = 180) -> Iterator[Served]:  # fmt: skip
    """`agentkit serve --port P OPTIONS` with the API key KEY; killed after `max_runtime_s`."""
    port = free_port()
    env = bench_env(**({"AGENTKIT_HOME": str(home)} if home else {}))
    log = Path(tempfile.mkstemp(prefix="agentkit-serve-", suffix=".log")[1])
    argv = [sys.executable, "-m", "agentkit", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)  # fmt: skip
    watchdog = threading.Timer(max_runtime_s, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout_s=start_timeout_s,
                     output=lambda: log.read_text(errors="replace"))
        yield Served(f"http://127.0.0.1:{port}/v1", proc, log)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.unlink(missing_ok=True)  # a server that did not start has its log's tail in the error


def server_tail(served: Served, chars: int = 2000) -> str:
    return served.log.read_text(errors="replace")[-chars:]

"""The `python` tool (off by default): run code in `python -I` in a subprocess with cwd = the workspace,
a wall-clock timeout, an address-space limit, a minimal environment, no network, and file writes
confined to the workspace.

Best effort without root: the child runs under `unshare -rn` (a new, empty network namespace) when
the kernel allows it; an audit hook is always installed as well. It refuses socket connect / bind /
lookups, writes (open for writing, rename, remove, mkdir, ...) whose real path is outside the
workspace or the run's private TMPDIR, and starting processes (a child `curl` or `sh` would run
without the hook). Audit hooks can be bypassed with ctypes: this guards against a model's mistakes
and prompt-injected requests, not against hostile code written to escape.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool

_NET_EVENTS = ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
               "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg")  # fmt: skip
_SPAWN_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn")  # fmt: skip
# Events whose path arguments (by position) are written: refused outside the writable roots.
_WRITE_EVENTS = {"os.remove": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.rmdir": (0,), "os.symlink": (1,),
                 "os.link": (1,), "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
                 "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,)}  # fmt: skip
# Runs before the agent's code, which arrives as sys.argv[1] (so a traceback shows `<agent>` lines).
# `{config}` is a dict literal: deny (events refused outright), roots (folders writes may touch, or
# None for no write confinement) and write_events.
_PRELUDE = """\
import os, sys
_cfg = {config}
_deny, _write_events = frozenset(_cfg["deny"]), _cfg["write_events"]
_roots = None if _cfg["roots"] is None else tuple(os.path.realpath(r) for r in _cfg["roots"])
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def _inside(path):
    if isinstance(path, int):
        return True  # a file descriptor: its path was checked when it was opened
    real = os.path.realpath(os.fsdecode(path))  # follows symlinks: a link that leads out is caught
    return real == os.devnull or any(real == r or real.startswith(r + os.sep) for r in _roots)
def _agentkit_guard(event, args):
    if event in _deny:
        raise PermissionError(f"{{event}} is disabled in the python tool (no network, no processes)")
    if _roots is None:
        return
    if event == "open":
        paths = (args[0],) if isinstance(args[2], int) and args[2] & _WRITE_FLAGS else ()
    else:
        paths = tuple(args[i] for i in _write_events.get(event, ()) if i < len(args))
    for path in paths:
        if path is not None and not _inside(path):
            raise PermissionError(f"{{event}} {{path!r}}: the python tool writes only inside the workspace")
sys.addaudithook(_agentkit_guard)
del _agentkit_guard, _cfg
_code = sys.argv[1]
sys.argv = ["-c"]
try:
    exec(compile(_code, "<agent>", "exec"), {{"__name__": "__main__", "__builtins__": __builtins__}})
except SystemExit:
    raise
except BaseException as _exc:  # the traceback without this prelude's frame
    import traceback
    traceback.print_exception(type(_exc), _exc, _exc.__traceback__.tb_next)
    sys.exit(1)
"""
_OUTPUT_FILE_LIMIT = 16 * 1024 * 1024  # bytes any file the child writes may reach (RLIMIT_FSIZE)


class PythonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=10.0, gt=0, le=600, description="wall-clock seconds per run")
    memory_mb: int = Field(default=512, ge=64, description="address-space limit of the child (RLIMIT_AS)")
    max_output_chars: int = Field(default=4000, gt=0, description="stdout+stderr characters returned")
    network_namespace: bool = Field(
        default=True, description="run under `unshare -rn` when available (false: audit hook only)"
    )
    confine_writes: bool = Field(
        default=True, description="refuse file writes outside the workspace (and a private temp folder)"
    )


@functools.cache
def unshare_works() -> bool:
    """Whether `unshare -rn` (user + network namespace, no root needed) runs here."""
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return False
    try:
        argv = [exe, "-rn", sys.executable, "-I", "-c", "pass"]
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _limits(memory_mb: int):  # -> a preexec_fn
    import resource  # imported here, not in the child: an import there could wait on a lock forever

    limits = [(resource.RLIMIT_AS, memory_mb * 1024 * 1024), (resource.RLIMIT_FSIZE, _OUTPUT_FILE_LIMIT),
              (resource.RLIMIT_CORE, 0)]  # fmt: skip

    def apply() -> None:
        # only setrlimit calls (no imports, no allocation-heavy work): preexec_fn runs between fork
        # and exec, where another thread may have held a lock at the fork
        for which, value in limits:
            resource.setrlimit(which, (value, value))

    return apply


def command(code: str, *, namespace: bool, writable: list[str] | None) -> list[str]:
    """The child's argv: `python -I -u -c PRELUDE CODE`, under `unshare -rn` when `namespace`.
    Starting processes is refused unless both the namespace and unconfined writes leave nothing for
    a child process (which runs without the hook) to get around."""
    spawn_ok = namespace and writable is None
    deny = sorted(set(_NET_EVENTS) | (set() if spawn_ok else set(_SPAWN_EVENTS)))
    config = {"deny": deny, "roots": writable, "write_events": _WRITE_EVENTS}
    argv = [sys.executable, "-I", "-u", "-c", _PRELUDE.format(config=repr(config)), code]
    return [shutil.which("unshare") or "unshare", "-rn", *argv] if namespace else argv


def run_python(code: str, workspace: Path, options: PythonOptions) -> str:
    """Run `code`; stdout+stderr (head) when it exits 0, else a ToolError carrying that output."""
    namespace = options.network_namespace and unshare_works()
    # Output goes to a file, not a pipe: a `while True: print()` fills at most RLIMIT_FSIZE of disk,
    # never this process's memory, and we read back only the head. TMPDIR is private to the run.
    with tempfile.TemporaryDirectory(prefix="agentkit-python-") as scratch, tempfile.TemporaryFile() as out:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workspace), "LANG": "C.UTF-8", "TMPDIR": scratch,
               "XDG_CACHE_HOME": scratch, "MPLCONFIGDIR": scratch,  # caches stay out of the workspace
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}  # fmt: skip
        writable = [str(workspace), scratch] if options.confine_writes else None
        start = time.monotonic()
        proc = subprocess.Popen(
            command(code, namespace=namespace, writable=writable), cwd=workspace, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_limits(options.memory_mb),  # noqa: PLW1509 -- setrlimit only, see _limits
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )  # fmt: skip
        try:
            code_ = proc.wait(timeout=options.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code_ = proc.wait()
        seconds = time.monotonic() - start
        out.seek(0)
        raw = out.read(options.max_output_chars * 4 + 4)
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - 2048))
        tail = out.read().decode("utf-8", errors="replace")  # a traceback ends the output, past any cut
    text = raw.decode("utf-8", errors="replace")
    if len(text) > options.max_output_chars or len(raw) < size:
        text = text[: options.max_output_chars] + f"\n[... output truncated: {size} bytes in all]"
    if timed_out:
        raise ToolError(f"python timed out after {options.timeout_s:g}s and was killed.", output=text,
                        fix="make the code finish sooner (no endless loops, less work).")  # fmt: skip
    if code_ != 0:
        last = next((line for line in reversed(tail.strip().splitlines()) if line.strip()), "")
        if code_ < 0:
            try:
                reason = f"killed by signal {signal.Signals(-code_).name}"
            except ValueError:
                reason = f"killed by signal {-code_}"
            if -code_ == signal.SIGXFSZ:
                last = f"a file it wrote passed {_OUTPUT_FILE_LIMIT // 2**20} MB"
        else:
            reason = f"exit code {code_}"
        raise ToolError(f"python failed ({reason}, {seconds:.1f}s): {last[:300]}", output=text)
    return text if text.strip() else "(no output; print() what you want to see)"


def _build(context: ToolContext, options: PythonOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def python(code: str) -> str:
        """Run Python code in the workspace and return what it prints."""
        return run_python(code, context.workspace, options)

    return StructuredTool.from_function(
        python,
        name="python",
        description="Run Python code; returns what it prints.",
        # the tool enforces its own limit; invoke_tool's, a little longer, is a backstop
        metadata={"timeout_s": options.timeout_s + 5.0},
    )


register_tool(ToolFactory("python", _build, "it runs code", PythonOptions, off_by_default=True))

"""The `python` tool (off by default): the agent's code runs in `python -I` inside a bubblewrap (`bwrap`)
sandbox that the kernel enforces, with a wall-clock timeout and resource limits. No sandbox, no tool.

The sandbox (`sandbox_argv`) has its own user, mount, PID, network, IPC and UTS namespaces. The
workspace is the only host folder it can write (bound at the same path, so paths and tracebacks read
as outside); the system libraries and the Python install (the venv alone, not the project around it)
are read-only; everything else ($AGENTKIT_HOME, /home, the host /tmp) is not there at all. /tmp is a
private, size-capped tmpfs thrown away after the run; the network namespace is empty; `getppid()` is
the sandbox's own init, so killing it ends only the sandbox. Processes started inside are allowed:
they are inside the same walls. An audit hook was the boundary before and was escaped 8 ways (issue
12); none is kept.

Start-up cost, `.venv/bin/python bench/python_sandbox.py` (median of 20 `print(1)` runs, 2 shared
cores): ~73 ms in the sandbox vs ~36 ms for a plain `python -I -c` subprocess: 2.0x, +37 ms a call.
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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.errors import BadInputError
from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool

_OUTPUT_FILE_LIMIT = 16 * 1024 * 1024  # bytes any file the child writes may reach (RLIMIT_FSIZE)
_SCRATCH_MB = 64  # the private /tmp and /dev/shm tmpfs each; they live in RAM, so they are capped
# Tasks (processes + threads) of the sandbox's uid inside its user namespace. Set by the prelude, i.e.
# after the namespace exists: set before bwrap, it would count every process the user runs on the host
# and could stop bwrap itself. The kernel exempts real root (uid 0 outside) from RLIMIT_NPROC, so when
# agentkit runs as root only the timeout + PID namespace bound a fork bomb (all die with the sandbox).
_MAX_TASKS = 64
# Host paths bound read-only when they exist: what the interpreter and its C extensions load.
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/alternatives",
                 "/etc/localtime")  # fmt: skip
# Runs before the agent's code, which arrives as sys.argv[1] (so a traceback shows `<agent>` lines).
# Not a guard: the limit below is the kernel's, and nothing here can be undone to reach outside.
_PRELUDE = f"""\
import resource, sys
resource.setrlimit(resource.RLIMIT_NPROC, ({_MAX_TASKS}, {_MAX_TASKS}))
del resource
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
_INSTALL_FIX = "apt-get install bubblewrap (dnf/pacman: bubblewrap), or leave the python tool disabled."
_REMOVED_OPTIONS = ("network_namespace", "confine_writes")


class PythonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=10.0, gt=0, le=600, description="wall-clock seconds per run")
    memory_mb: int = Field(default=512, ge=64, description="address-space limit of the child (RLIMIT_AS)")
    max_output_chars: int = Field(default=4000, gt=0, description="stdout+stderr characters returned")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        # a goal written for the audit-hook version should learn why its field went, not just "extra"
        if isinstance(data, dict) and (old := [k for k in _REMOVED_OPTIONS if k in data]):
            raise ValueError(
                f"{' and '.join(old)} was removed: the python tool now always runs in a bubblewrap sandbox "
                "(no network, writes only in the workspace); delete the field"
            )
        return data


def _interpreter() -> tuple[str, list[str]]:
    """(the interpreter to run inside, the host folders it needs read-only). The venv's `python`
    link is kept (its folder resolved), so Python still finds `pyvenv.cfg` and the venv's packages;
    only the venv folder is bound, never the project around it."""
    exe = os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))
    prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    needed = {os.path.realpath(p) for p in prefixes}
    needed |= {os.path.dirname(exe), os.path.dirname(os.path.realpath(exe))}
    return exe, sorted(needed)


def sandbox_argv(code: str, workspace: Path) -> list[str]:
    """The whole child argv: `bwrap <namespaces> <mounts> python -I -u -c PRELUDE CODE`. Mounts are
    made parents first (sorted by depth), so a workspace inside the venv is writable on top of the
    read-only venv, and a venv inside the workspace stays read-only on top of the workspace."""
    root = os.path.realpath(str(workspace))
    exe, python_dirs = _interpreter()
    read_only = dict.fromkeys([p for p in _SYSTEM_PATHS if os.path.exists(p)] + python_dirs)  # a system Python: /usr
    mounts: list[tuple[str, list[str]]] = [(p, ["--ro-bind", p, p]) for p in read_only]
    mounts += [
        # TMPDIR and caches, not the host's /tmp. Writable on purpose (models write /tmp/x.csv); a
        # workspace under /tmp shows its parent folders here, empty, and writes to them are thrown away.
        ("/tmp", ["--size", str(_SCRATCH_MB << 20), "--tmpfs", "/tmp"]),
        ("/dev", ["--dev", "/dev"]),  # null, zero, urandom, tty, pts: no host device
        ("/dev/shm", ["--size", str(_SCRATCH_MB << 20), "--tmpfs", "/dev/shm"]),  # multiprocessing locks
        ("/proc", ["--proc", "/proc"]),  # of the new PID namespace: only the sandbox's processes
        # Bound by path: a hard link to an outside file that someone planted in the workspace beforehand
        # stays writable (same inode). Code inside cannot make one: outside files are not there to link.
        (root, ["--bind", root, root]),
    ]
    mounts.sort(key=lambda m: m[0].rstrip("/").count("/"))  # stable: same depth keeps the order above
    return [
        shutil.which("bwrap") or "bwrap",
        "--unshare-all", "--unshare-user", "--disable-userns",  # no nested namespace to gain capabilities in
        "--die-with-parent",  # the agent dying (or killing bwrap at a timeout) kills everything inside
        "--new-session",  # no TIOCSTI into a terminal the agent runs in
        "--cap-drop", "ALL",
        *(arg for _, args in mounts for arg in args),
        # the rest of the root (the folders bwrap made as mount points) and /dev: read-only, so a
        # write "outside" fails loudly instead of landing in a throw-away tmpfs
        "--remount-ro", "/", "--remount-ro", "/dev",
        "--chdir", root,
        exe, "-I", "-u", "-c", _PRELUDE, code,
    ]  # fmt: skip


@functools.cache
def sandbox_problem() -> tuple[str, str] | None:
    """None when the sandbox starts here, else (what is wrong, the fix). One real sandboxed `pass`
    (~40 ms), run once per process: whatever would break a run (no bwrap, user namespaces disabled,
    an old bwrap without an option used here) breaks this probe first."""
    if not sys.platform.startswith("linux"):
        return f"the python tool needs Linux namespaces (bubblewrap); this is {sys.platform}.", (
            "run agentkit on Linux, or leave the python tool disabled."
        )
    if shutil.which("bwrap") is None:
        return "the python tool needs bubblewrap (bwrap), which is missing.", _INSTALL_FIX
    with tempfile.TemporaryDirectory(prefix="agentkit-sandbox-probe-") as folder:
        try:
            done = subprocess.run(sandbox_argv("pass", Path(folder)), capture_output=True, timeout=30,
                                  stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        else:
            if done.returncode == 0:
                return None
            lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit code {done.returncode}"
    return f"bubblewrap (bwrap) cannot start the python tool's sandbox here: {why[:200]}", (
        "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 "
        "an AppArmor profile for bwrap), or leave the python tool disabled."
    )


def _limits(memory_mb: int):  # -> a preexec_fn
    import resource  # imported here, not in the child: an import there could wait on a lock forever

    # RLIMIT_AS also covers bwrap (~1 MB); inherited by everything in the sandbox, each process alone
    limits = [(resource.RLIMIT_AS, memory_mb * 1024 * 1024), (resource.RLIMIT_FSIZE, _OUTPUT_FILE_LIMIT),
              (resource.RLIMIT_CORE, 0)]  # fmt: skip

    def apply() -> None:
        # only setrlimit calls (no imports, no allocation-heavy work): preexec_fn runs between fork
        # and exec, where another thread may have held a lock at the fork
        for which, value in limits:
            resource.setrlimit(which, (value, value))

    return apply


def run_python(code: str, workspace: Path, options: PythonOptions) -> str:
    """Run `code` in the sandbox; stdout+stderr (head) when it exits 0, else a ToolError carrying that
    output. Refuses (ToolError) where the sandbox cannot start: never runs the code unconfined."""
    problem = sandbox_problem()
    if problem is not None:
        raise ToolError(problem[0], fix=problem[1])
    # Output goes to a file, not a pipe: a `while True: print()` fills at most RLIMIT_FSIZE of disk,
    # never this process's memory, and we read back only the head.
    with tempfile.TemporaryFile() as out:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workspace), "LANG": "C.UTF-8",
               "TMPDIR": "/tmp", "XDG_CACHE_HOME": "/tmp", "MPLCONFIGDIR": "/tmp",  # caches: not in the workspace
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}  # fmt: skip
        start = time.monotonic()
        # --die-with-parent ties the sandbox to this *thread* (PR_SET_PDEATHSIG): it waits below until
        # the sandbox is gone, so the thread outlives it.
        proc = subprocess.Popen(
            sandbox_argv(code, workspace), cwd=workspace, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_limits(options.memory_mb),  # noqa: PLW1509 -- setrlimit only, see _limits
            start_new_session=True,  # bwrap in its own group: the kill below cannot reach the agent
        )  # fmt: skip
        try:
            code_ = proc.wait(timeout=options.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            try:  # bwrap dies; --die-with-parent then kills the sandbox's init, and with it every process
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
        elif 128 < code_ < 128 + signal.NSIG:  # bwrap reports a signal death inside as 128 + signal
            try:
                reason = f"exit code {code_}: killed by signal {signal.Signals(code_ - 128).name}"
            except ValueError:
                reason = f"exit code {code_}"
        else:
            reason = f"exit code {code_}"
        raise ToolError(f"python failed ({reason}, {seconds:.1f}s): {last[:300]}", output=text)
    return text if text.strip() else "(no output; print() what you want to see)"


def _build(context: ToolContext, options: PythonOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    # refused here, while the goal's tools are built: a run that needs python fails before it starts
    problem = sandbox_problem()
    if problem is not None:
        raise BadInputError(problem[0], fix=problem[1])

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

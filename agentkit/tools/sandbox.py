"""The OS sandbox that code an agent wrote runs in (the `python` tool, a goal's `command` checks):
bubblewrap namespaces, per-process limits, and a cgroup that caps the whole sandbox where one can be made.

The sandbox (`sandbox_argv`) has its own user, mount, PID, network, IPC and UTS namespaces. The
workspace is the only host folder it can write (bound at the same path, so paths and tracebacks read
as outside); the system libraries and the Python install (the venv alone, not the project around it)
are read-only; everything else ($AGENTKIT_HOME, /home, the host /tmp) is not there at all. /tmp is a
private, size-capped tmpfs thrown away after the run; the network namespace is empty; `getppid()` is
the sandbox's own init, so killing it ends only the sandbox. An audit hook was the boundary before and
was escaped 8 ways (issue 12); none is kept.

Limits: RLIMIT_AS, RLIMIT_FSIZE and RLIMIT_CORE per process. Per-process limits do not bound a
sandbox that forks: 4 children of 400 MB each pass a 512 MB RLIMIT_AS, and the kernel exempts real
root from RLIMIT_NPROC. So each run also gets a cgroup (v1 `memory` + `pids`, or v2) capping the
memory and the tasks of everything inside, where this machine lets us make one (root, or a delegated
cgroup); every process left in it is killed when the run ends.

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
import uuid
from dataclasses import dataclass
from pathlib import Path

OUTPUT_FILE_LIMIT = 16 * 1024 * 1024  # bytes any file the sandbox writes may reach (RLIMIT_FSIZE)
MAX_TASKS = 64  # processes + threads of one sandbox (cgroup pids.max, and RLIMIT_NPROC inside)
_SCRATCH_MB = 64  # the private /tmp and /dev/shm tmpfs each; they live in RAM, so they are capped
# Host paths bound read-only when they exist: what the interpreter, a shell and C extensions load.
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/alternatives",
                 "/etc/localtime")  # fmt: skip
INSTALL_FIX = "apt-get install bubblewrap (dnf/pacman: bubblewrap), or leave the python tool and command checks out."
# The whole environment inside: nothing of the agent's (API keys, tokens) reaches the sandbox.
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "XDG_CACHE_HOME": "/tmp",
        "MPLCONFIGDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1"}  # fmt: skip


def interpreter() -> tuple[str, list[str]]:
    """(the Python to run inside, the host folders it needs read-only). The venv's `python` link is
    kept (its folder resolved), so Python still finds `pyvenv.cfg` and the venv's packages; only the
    venv folder is bound, never the project around it."""
    exe = os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))
    prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    needed = {os.path.realpath(p) for p in prefixes}
    needed |= {os.path.dirname(exe), os.path.dirname(os.path.realpath(exe))}
    return exe, sorted(needed)


def sandbox_argv(command: list[str], workspace: Path) -> list[str]:
    """`bwrap <namespaces> <mounts> COMMAND...`. Mounts are made parents first (sorted by depth), so
    a workspace inside the venv is writable on top of the read-only venv, and a venv inside the
    workspace stays read-only on top of the workspace."""
    root = os.path.realpath(str(workspace))
    _, python_dirs = interpreter()
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
        *command,
    ]  # fmt: skip


@functools.cache
def sandbox_problem() -> tuple[str, str] | None:
    """None when the sandbox starts here, else (what is wrong, the fix). One real sandboxed `true`
    (~40 ms), run once per process: whatever would break a run (no bwrap, user namespaces disabled,
    an old bwrap without an option used here) breaks this probe first."""
    if not sys.platform.startswith("linux"):
        return f"agent code (the python tool, command checks) needs Linux namespaces; this is {sys.platform}.", (
            "run agentkit on Linux, or leave the python tool and command checks out."
        )
    if shutil.which("bwrap") is None:
        return "agent code (the python tool, command checks) needs bubblewrap (bwrap), which is missing.", INSTALL_FIX
    with tempfile.TemporaryDirectory(prefix="agentkit-sandbox-probe-") as folder:
        try:
            exe, _ = interpreter()
            done = subprocess.run(sandbox_argv([exe, "-I", "-c", "pass"], Path(folder)), capture_output=True,
                                  timeout=30, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        else:
            if done.returncode == 0:
                return None
            lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit code {done.returncode}"
    return f"bubblewrap (bwrap) cannot start the agent-code sandbox here: {why[:200]}", (
        "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 "
        "an AppArmor profile for bwrap), or leave the python tool and command checks out."
    )


# ---- a cgroup per run ---------------------------------------------------------------------------
_CGROUPS = Path("/sys/fs/cgroup")  # v1: one hierarchy per controller below it; v2: the one hierarchy


class Cgroup:
    """One throw-away cgroup (v1: a folder in each of `memory` and `pids`; v2: one folder) capping a
    sandbox's memory and tasks. `make` returns None where this machine does not let us make one."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders

    @classmethod
    def make(cls, memory_bytes: int, tasks: int) -> Cgroup | None:
        name = f"agentkit-sandbox-{uuid.uuid4().hex[:12]}"
        v1 = {"memory": ("memory.limit_in_bytes", memory_bytes), "pids": ("pids.max", tasks)}
        enabled = _CGROUPS / "cgroup.subtree_control"  # v2: the controllers its children get
        if all((_CGROUPS / c / "cgroup.procs").exists() for c in v1):
            made = cls([_CGROUPS / c / name for c in v1])
            limits = [(made.folders[i], *v1[c]) for i, c in enumerate(v1)]
        elif enabled.exists() and {"memory", "pids"} <= set(enabled.read_text().split()):
            made = cls([_CGROUPS / name])
            limits = [(made.folders[0], "memory.max", memory_bytes), (made.folders[0], "pids.max", tasks),
                      (made.folders[0], "memory.swap.max", 0)]  # fmt: skip
        else:
            return None
        try:
            for folder in made.folders:
                folder.mkdir()
            for folder, knob, value in limits:
                if (folder / knob).exists():
                    (folder / knob).write_text(str(value))
        except OSError:  # not root and no delegation, a read-only /sys: per-process limits only
            made.remove()
            return None
        return made

    def join_fds(self) -> list[int]:
        """fds of each `cgroup.procs`, opened here so that the forked child only writes to them."""
        return [os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for folder in self.folders]

    def kill_all(self) -> None:
        for folder in self.folders:
            try:
                pids = (folder / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass

    def remove(self) -> None:
        """Kill what is left inside, then remove the folders (rmdir: a cgroup is removed empty)."""
        for attempt in range(50):
            self.kill_all()
            left = []
            for folder in self.folders:
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(folder)
            self.folders = left
            if not left:
                return
            time.sleep(0.02 * (attempt + 1))


def _preexec(memory_mb: int, cgroup_fds: list[int]):  # -> a preexec_fn
    import resource  # imported here, not in the child: an import there could wait on a lock forever

    limits = [(resource.RLIMIT_AS, memory_mb * 1024 * 1024), (resource.RLIMIT_FSIZE, OUTPUT_FILE_LIMIT),
              (resource.RLIMIT_CORE, 0)]  # fmt: skip

    def apply() -> None:
        # only syscalls (no imports, no allocation-heavy work): preexec_fn runs between fork and exec,
        # where another thread may have held a lock at the fork. b"0" moves the writing process.
        for fd in cgroup_fds:
            os.write(fd, b"0")
        for which, value in limits:
            resource.setrlimit(which, (value, value))

    return apply


@dataclass(frozen=True)
class SandboxRun:
    """How a sandboxed command ended, and the head and tail of what it printed (stdout + stderr)."""

    returncode: int
    timed_out: bool
    seconds: float
    head: bytes  # the first `max_output_bytes` bytes
    size: int  # bytes printed in all
    tail: str  # the last 2 KB, decoded: a traceback ends the output, past any cut
    capped: bool  # a cgroup held the whole sandbox's memory and tasks


def run_sandboxed(command: list[str], workspace: Path, *, timeout_s: float, memory_mb: int,
                  max_output_bytes: int) -> SandboxRun:  # fmt: skip
    """Run `command` in the sandbox with the workspace as cwd and HOME. The caller checks
    `sandbox_problem()` first: this never runs anything unconfined."""
    env = {**_ENV, "HOME": str(workspace)}
    cgroup = Cgroup.make(memory_mb * 1024 * 1024, MAX_TASKS)
    fds = cgroup.join_fds() if cgroup else []
    # Output goes to a file, not a pipe: a `while True: print()` fills at most RLIMIT_FSIZE of disk,
    # never this process's memory, and only the head is read back.
    try:
        with tempfile.TemporaryFile() as out:
            start = time.monotonic()
            # --die-with-parent ties the sandbox to this *thread* (PR_SET_PDEATHSIG): it waits below
            # until the sandbox is gone, so the thread outlives it.
            proc = subprocess.Popen(
                sandbox_argv(command, workspace), cwd=workspace, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_preexec(memory_mb, fds),  # noqa: PLW1509 -- syscalls only, see _preexec
                start_new_session=True,  # bwrap in its own group: the kill below cannot reach the agent
                pass_fds=(),
            )  # fmt: skip
            try:
                code = proc.wait(timeout=timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                try:  # bwrap dies; --die-with-parent then kills the sandbox's init, and every process
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                code = proc.wait()
            seconds = time.monotonic() - start
            out.seek(0)
            head = out.read(max_output_bytes)
            size = out.seek(0, os.SEEK_END)
            out.seek(max(0, size - 2048))
            tail = out.read().decode("utf-8", errors="replace")
    finally:
        for fd in fds:
            os.close(fd)
        if cgroup:
            cgroup.remove()
    return SandboxRun(code, timed_out, seconds, head, size, tail, capped=cgroup is not None)


def describe_exit(code: int) -> str:
    """'exit code 3', 'killed by signal SIGKILL' (bwrap reports a death inside as 128 + signal)."""
    signum = -code if code < 0 else code - 128 if 128 < code < 128 + signal.NSIG else 0
    if not signum:
        return f"exit code {code}"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = str(signum)
    return f"killed by signal {name}" if code < 0 else f"exit code {code}: killed by signal {name}"

"""The python tool: cwd is the workspace, a `while True` is killed at the timeout, a huge allocation
hits the memory limit, the environment is minimal -- and the bubblewrap sandbox holds: the 8 escapes
of issue 12 (which beat the old audit hook) reach nothing outside, with real bwrap and real processes.
Without a working bwrap the tool refuses to build and to run; it never falls back."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agentkit.errors import BadInputError
from agentkit.tools import ToolContext, ToolError, build_tools, invoke_tool, sandbox
from agentkit.tools.python_code import PythonOptions, run_python, sandbox_problem



def without_bwrap(test):  # the refusal tests: they stand in for a missing or failing bwrap themselves
    test.without_bwrap = True
    return test


@pytest.fixture(autouse=True)
def _needs_bwrap(request: pytest.FixtureRequest) -> None:
    # `make install` installs bubblewrap; elsewhere the sandbox tests skip, saying why
    if not getattr(request.function, "without_bwrap", False) and (problem := sandbox_problem()):
        pytest.skip(f"no bubblewrap sandbox here: {problem[0]}")


def _python(workspace: Path, **options: object):
    return build_tools([{"name": "python", "enabled": True, **options}], ToolContext(workspace))[0]


@pytest.fixture
def rooms(tmp_path: Path) -> tuple[Path, Path]:
    """(workspace, a folder outside it holding keep.txt): what escapes aim at."""
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("kept")
    return workspace, outside


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "kept"


def _run(workspace: Path, code: str, **options: object):
    return invoke_tool(_python(workspace, **options), {"code": code}, timeout_s=30)


# ---- what the tool does ----------------------------------------------------------------------


def test_runs_in_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("21")
    code = "import os\nprint(os.getcwd())\nprint(int(open('data.txt').read()) * 2)\nopen('out.txt', 'w').write('ok')"
    out = _run(tmp_path, code)
    assert out.ok, out.error
    assert out.output.split() == [str(tmp_path.resolve()), "42"]
    assert (tmp_path / "out.txt").read_text() == "ok"


def test_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKIT_SECRET_TOKEN", "s3cret")
    out = _run(tmp_path, "import os, sys\nprint(sorted(os.environ))\nprint(sys.flags.isolated)")
    assert out.ok and "AGENTKIT_SECRET_TOKEN" not in out.output and "s3cret" not in out.output
    assert out.output.split()[-1] == "1"


def test_timeout_kills_an_endless_loop(tmp_path: Path) -> None:
    code = "import time\nopen('started', 'w').close()\nwhile True:\n    pass"
    start = time.monotonic()
    out = _run(tmp_path, code, timeout_s=1.5)
    elapsed = time.monotonic() - start
    assert not out.ok and "timed out after 1.5s and was killed" in out.error
    assert (tmp_path / "started").exists() and elapsed < 10


def test_timeout_kills_child_processes_too(tmp_path: Path) -> None:
    # a grandchild that outlives the timeout would keep writing; killing bwrap kills the whole sandbox
    code = ("import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True:\\n  open(\"tick\", \"a\").write(\"x\")\\n  time.sleep(0.05)'])\n"
            "import os, time\n"
            "while not os.path.exists('tick'): time.sleep(0.01)\n"  # the grandchild runs before the kill
            "while True: pass")  # fmt: skip
    out = _run(tmp_path, code, timeout_s=3)
    assert not out.ok and "timed out" in out.error
    time.sleep(0.3)
    size = (tmp_path / "tick").stat().st_size
    time.sleep(0.5)
    assert (tmp_path / "tick").stat().st_size == size


def test_memory_limit_stops_a_huge_allocation(tmp_path: Path) -> None:
    out = _run(tmp_path, "block = bytearray(2 * 1024 ** 3)\nprint('allocated', len(block))", memory_mb=256)
    assert not out.ok and "MemoryError" in out.error and "allocated" not in out.output


def test_errors_show_the_traceback_tail(tmp_path: Path) -> None:
    out = _run(tmp_path, "print('before')\n1 / 0")
    assert not out.ok and "exit code 1" in out.error and "ZeroDivisionError" in out.error
    assert "before" in out.output and '"<agent>", line 2' in out.output


def test_output_is_capped(tmp_path: Path) -> None:
    out = _run(tmp_path, "print('y' * 100_000)", max_output_chars=500)
    assert out.ok and out.output.startswith("y" * 500) and "output truncated" in out.output
    assert len(out.output) < 600


def test_the_error_line_survives_a_long_output(tmp_path: Path) -> None:
    out = _run(tmp_path, "print('z' * 50_000)\nraise ValueError('the real problem')", max_output_chars=300)
    assert not out.ok and "ValueError: the real problem" in out.error


def test_writes_inside_the_workspace_and_temp_files_work(tmp_path: Path) -> None:
    code = ("import os, tempfile, pathlib\nos.makedirs('a/b')\npathlib.Path('a/b/c.txt').write_text('fine')\n"
            "os.rename('a/b/c.txt', 'a/c.txt')\nf = tempfile.NamedTemporaryFile('w', delete=False)\n"
            "f.write('tmp')\nf.close()\nprint(open('a/c.txt').read(), open(f.name).read(), f.name)")  # fmt: skip
    out = _run(tmp_path, code)
    assert out.ok, out.error
    fine, tmp, name = out.output.split()
    assert (fine, tmp) == ("fine", "tmp") and (tmp_path / "a" / "c.txt").read_text() == "fine"
    assert not os.path.exists(name)  # the temp folder is the sandbox's own tmpfs, not the host's /tmp


def test_child_processes_run_but_are_confined_too(rooms: tuple[Path, Path]) -> None:
    # the audit hook had to refuse processes (a child ran without it); the sandbox confines them too
    workspace, outside = rooms
    victim = outside / "victim.txt"
    code = (f"import os, subprocess\nprint('system', os.system('echo PWNED > {victim}'))\n"
            f"print(subprocess.run(['sh', '-c', 'echo ran; echo PWNED > {victim}']).returncode)")  # fmt: skip
    out = _run(workspace, code)
    assert out.ok, out.error
    assert "ran" in out.output  # the child did run
    _untouched(outside)


OUTSIDE_WRITES = {
    "open": "open({target!r}, 'w').write('PWNED')",
    "pathlib": "import pathlib\npathlib.Path({target!r}).write_text('PWNED')",
    "os_open": "import os\nos.close(os.open({target!r}, os.O_WRONLY | os.O_CREAT))",
    "via_symlink": "import os\nos.symlink({target!r}, 'link')\nopen('link', 'w').write('PWNED')",
    "via_chdir": "import os\nos.chdir({parent!r})\nopen('victim.txt', 'w').write('PWNED')",
    "rename_out": "open('mine.txt', 'w').write('PWNED')\nimport os\nos.rename('mine.txt', {target!r})",
    "remove": "import os\nos.remove({existing!r})",
    "mkdir": "import os\nos.mkdir({target!r} + '.d')",
}


@pytest.mark.parametrize("kind", list(OUTSIDE_WRITES))
def test_writes_outside_the_workspace_fail(rooms: tuple[Path, Path], kind: str) -> None:
    workspace, outside = rooms
    code = OUTSIDE_WRITES[kind].format(target=str(outside / "victim.txt"), parent=str(outside),
                                       existing=str(outside / "keep.txt"))  # fmt: skip
    out = _run(workspace, code)
    assert not out.ok and "Error" in out.error  # outside is not there: FileNotFoundError
    _untouched(outside)


def test_the_workspace_is_the_only_writable_host_folder(tmp_path: Path) -> None:
    code = ("import errno, sys\n"
            "for path in ('/etc/x', '/usr/x', '/x', sys.prefix + '/x', sys.base_prefix + '/x'):\n"
            "    try:\n        open(path, 'w')\n        print(path, 'WRITTEN')\n"
            "    except OSError as exc:\n        print(path, errno.errorcode[exc.errno])")  # fmt: skip
    out = _run(tmp_path, code)
    assert out.ok, out.error
    assert "WRITTEN" not in out.output and out.output.count("EROFS") == 5


def test_files_outside_the_workspace_are_not_even_visible(rooms: tuple[Path, Path]) -> None:
    workspace, outside = rooms
    (outside / "token.txt").write_text("s3cret")
    # the registry home, this repository (only the venv is bound, not the project around it)
    hidden = [outside / "token.txt", Path(os.environ["AGENTKIT_HOME"]), Path(__file__)]
    code = f"import os\nfor path in {[str(p) for p in hidden]!r}:\n    print(os.path.exists(path))"
    out = _run(workspace, code)
    assert out.ok, out.error
    assert out.output.split() == ["False"] * len(hidden)


def _capped() -> bool:
    """Whether a run here is held by a cgroup (sandbox.py) or, for a non-root user, by RLIMIT_NPROC."""
    cgroup = sandbox.Cgroup.make(64 << 20, 8)
    if cgroup:
        cgroup.remove()
    return cgroup is not None


@pytest.mark.skipif(os.geteuid() == 0 and not _capped(),
                    reason="root is exempt from RLIMIT_NPROC and no cgroup can be made here")  # fmt: skip
def test_process_count_is_capped(tmp_path: Path) -> None:
    """Also as root (the kernel exempts root from RLIMIT_NPROC): the run's cgroup caps its tasks."""
    code = ("import os, time\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n"
            "            time.sleep(2)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)")  # fmt: skip
    out = _run(tmp_path, code)
    assert out.ok, out.error
    assert int(out.output.split()[-1]) < sandbox.MAX_TASKS


@pytest.mark.skipif(not _capped(), reason="no cgroup can be made here: memory is capped per process only")
def test_memory_is_capped_for_the_whole_sandbox(tmp_path: Path) -> None:
    """4 children of 300 MB each pass a 512 MB RLIMIT_AS one by one; the cgroup holds them together
    to 512 MB, so the kernel kills some of them (SIGKILL: the OOM killer, inside the cgroup only)."""
    code = (
        "import os, time\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
        "        block = bytearray(300 << 20)\n        block[::4096] = b'x' * len(block[::4096])\n"
        "        time.sleep(1)\n        os._exit(0)\n    kids.append(pid)\n"
        "print(sum(os.waitpid(k, 0)[1] == 0 for k in kids))"
    )
    out = invoke_tool(_python(tmp_path, memory_mb=512, timeout_s=30), {"code": code}, timeout_s=40)
    assert out.ok, out.error
    assert int(out.output.split()[-1]) <= 1  # at most one 300 MB child fits in 512 MB
    assert _run(tmp_path, "print('next')").output.strip() == "next"  # and the agent lives on


# ---- the network -------------------------------------------------------------------------------


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that records whether anyone connected."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    # the control: this process can connect, so a refusal later is the sandbox's doing
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
    deadline = time.monotonic() + 3
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(accepted) == 1
    yield port, accepted
    stop.set()
    thread.join(2)
    server.close()


CONNECT = """
import socket
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", {port}))
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


def test_network_is_blocked_by_the_empty_namespace(tmp_path: Path, listener) -> None:
    port, accepted = listener
    out = _run(tmp_path, CONNECT.format(port=port))
    time.sleep(0.5)
    assert out.ok, out.error
    assert "BLOCKED" in out.output and "CONNECTED" not in out.output
    assert len(accepted) == 1  # only the control: the sandboxed code never reached the listener


def test_name_resolution_is_blocked(tmp_path: Path) -> None:
    out = _run(tmp_path, "import socket\nsocket.getaddrinfo('example.com', 80)")
    assert not out.ok and "gaierror" in out.error


# ---- the 8 escapes of issue 12 -----------------------------------------------------------------

# (1) The old guard read its config from globals of __main__; rebinding them switched it off.
REBIND = """
import __main__, os, socket
__main__._roots, __main__._deny = ("/",), frozenset()
for name, action in [
    ("write", lambda: open({victim!r}, "w").write("PWNED")),
    ("system", lambda: os.system("echo PWNED > {victim}")),
    ("socket", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3)),
]:
    try:
        print(name, action())
    except OSError as exc:
        print(name, type(exc).__name__)
"""


def test_escape_rebinding_guard_globals_cannot_write_outside(rooms: tuple[Path, Path], listener) -> None:
    workspace, outside = rooms
    port, accepted = listener
    out = _run(workspace, REBIND.format(victim=str(outside / "victim.txt"), port=port))
    time.sleep(0.5)
    assert out.ok, out.error
    _untouched(outside)
    assert len(accepted) == 1  # only the listener's own control connection


# (2) os.open relative to a directory fd, of the outside folder or of the workspace's parent
DIR_FD = """
import os
for folder in ({outside!r}, os.path.dirname(os.getcwd())):
    try:
        fd = os.open(folder, os.O_RDONLY)
        os.close(os.open("victim.txt", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        print(folder, "opened")  # the workspace's parent inside is the sandbox's own tmpfs
    except OSError as exc:
        print(folder, type(exc).__name__)
"""


def test_escape_dir_fd_of_an_outside_folder_cannot_write_outside(rooms: tuple[Path, Path]) -> None:
    workspace, outside = rooms
    out = _run(workspace, DIR_FD.format(outside=str(outside)))
    assert out.ok, out.error
    assert f"{outside} FileNotFoundError" in out.output
    _untouched(outside)
    assert sorted(p.name for p in workspace.parent.iterdir()) == ["outside", "ws"]


# (3) A hard link is the same inode: to write an outside file through the workspace, the code would
# have to link it in, and outside files are not visible to link. A link planted in the workspace by
# someone outside the sandbox is writable (a bind mount works on paths, not inodes); the file tools
# refuse such links (confined.py), and only the user can plant one.
def test_escape_hard_link_to_an_outside_file_cannot_be_made(rooms: tuple[Path, Path]) -> None:
    workspace, outside = rooms
    code = (f"import os\nos.link({str(outside / 'keep.txt')!r}, 'linked.txt')\n"
            "open('linked.txt', 'w').write('PWNED')")
    out = _run(workspace, code)
    assert not out.ok and "FileNotFoundError" in out.error
    assert not (workspace / "linked.txt").exists()
    _untouched(outside)


# (4) sqlite3 opens its files in C, past any audit hook
def test_escape_sqlite_database_outside_is_not_created(rooms: tuple[Path, Path]) -> None:
    workspace, outside = rooms
    code = f"import sqlite3\nsqlite3.connect({str(outside / 'evil.db')!r}).execute('create table t(x)')"
    out = _run(workspace, code)
    assert not out.ok and "unable to open database file" in out.error
    _untouched(outside)


# (5) _posixsubprocess.fork_exec raises no audit event; the shell it starts is inside the sandbox
FORK_EXEC = """
import _posixsubprocess, os
read_end, write_end = os.pipe()
args = [b"/bin/sh", b"-c", b"echo PWNED > {victim}; echo PWNED > victim.txt"]
pid = _posixsubprocess.fork_exec(args, [args[0]], True, (write_end,), None, None, -1, -1, -1, -1, -1, -1,
                                 read_end, write_end, False, False, -1, None, None, None, -1, None, False)
print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_escape_posixsubprocess_fork_exec_cannot_write_outside(rooms: tuple[Path, Path]) -> None:
    workspace, outside = rooms
    out = _run(workspace, FORK_EXEC.format(victim=outside / "victim.txt"))
    assert out.ok, out.error
    assert (workspace / "victim.txt").read_text() == "PWNED\n"  # the shell ran (in the workspace)
    _untouched(outside)


# (6) kill(getppid()) killed the agent; inside, the parent is the sandbox's init. A canary process of
# the test's own shows that kill(-1) reaches nothing outside the sandbox either.
KILLS = {
    "parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('alive')",
    "own_group": "import os, signal\nos.killpg(0, signal.SIGKILL)",
    "everyone": ("import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\n"
                 "except ProcessLookupError:\n    pass\nprint('alive')"),
}


@pytest.mark.parametrize("kind", list(KILLS))
def test_escape_killing_the_parent_ends_only_the_sandbox(tmp_path: Path, kind: str) -> None:
    canary = subprocess.Popen(["sleep", "30"])
    try:
        out = _run(tmp_path, KILLS[kind])
        assert canary.poll() is None  # this process (the agent) and its other children live on
        if kind == "own_group":
            assert not out.ok and "killed by signal SIGKILL" in out.error
        else:
            assert out.ok and out.output.strip() == "alive", out.error
        assert _run(tmp_path, "print('next')").output.strip() == "next"  # the tool still works
    finally:
        canary.kill()
        canary.wait()


# ---- no sandbox, no tool ------------------------------------------------------------------------


@pytest.fixture
def fresh_probe():
    sandbox_problem.cache_clear()
    yield
    sandbox_problem.cache_clear()


@without_bwrap
def test_refuses_without_bubblewrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_probe) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(BadInputError, match=r"needs bubblewrap \(bwrap\), which is missing") as err:
        _python(tmp_path)
    assert "apt-get install bubblewrap" in str(err.value) and "\n" not in str(err.value)
    # no fallback when called directly either: the code never runs
    with pytest.raises(ToolError, match="bubblewrap"):
        run_python("open('ran', 'w')", tmp_path, PythonOptions())
    assert not (tmp_path / "ran").exists()


@without_bwrap
def test_refuses_when_bwrap_cannot_make_a_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_probe
) -> None:
    fake = tmp_path / "bwrap"  # stands in for a bwrap that user namespaces are denied to
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: str(fake))
    with pytest.raises(BadInputError, match="cannot start the agent-code sandbox here: bwrap: setting up"):
        _python(tmp_path)


@without_bwrap
def test_removed_options_name_the_change(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="network_namespace was removed: .* bubblewrap sandbox"):
        _python(tmp_path, network_namespace=False)

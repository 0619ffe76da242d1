"""The python tool: cwd is the workspace, a `while True` is killed at the timeout, a huge allocation
hits the memory limit, the environment is minimal, and a connect to 127.0.0.1 is blocked -- both
under `unshare -rn` (when this machine allows it) and with the audit hook alone."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from agentkit.tools import ToolContext, build_tools, invoke_tool, python_code
from agentkit.tools.python_code import unshare_works


def _python(workspace: Path, **options: object):
    return build_tools([{"name": "python", "enabled": True, **options}], ToolContext(workspace))[0]


def test_runs_in_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("21")
    code = "import os\nprint(os.getcwd())\nprint(int(open('data.txt').read()) * 2)\nopen('out.txt', 'w').write('ok')"
    out = invoke_tool(_python(tmp_path), {"code": code}, timeout_s=30)
    assert out.ok, out.error
    assert out.output.split() == [str(tmp_path.resolve()), "42"]
    assert (tmp_path / "out.txt").read_text() == "ok"


def test_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKIT_SECRET_TOKEN", "s3cret")
    code = "import os, sys\nprint(sorted(os.environ))\nprint(sys.flags.isolated)"
    out = invoke_tool(_python(tmp_path), {"code": code}, timeout_s=30)
    assert out.ok and "AGENTKIT_SECRET_TOKEN" not in out.output and "s3cret" not in out.output
    assert out.output.split()[-1] == "1"


def test_timeout_kills_an_endless_loop(tmp_path: Path) -> None:
    code = "import time\nopen('started', 'w').close()\nwhile True:\n    pass"
    start = time.monotonic()
    out = invoke_tool(_python(tmp_path, timeout_s=1.5), {"code": code}, timeout_s=30)
    elapsed = time.monotonic() - start
    assert not out.ok and "timed out after 1.5s and was killed" in out.error
    assert (tmp_path / "started").exists() and elapsed < 10


def test_timeout_kills_child_processes_too(tmp_path: Path) -> None:
    # a grandchild that outlives the timeout would keep writing; the process group is killed
    code = ("import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True:\\n  open(\"tick\", \"a\").write(\"x\")\\n  time.sleep(0.05)'])\n"
            "import os, time\n"
            "while not os.path.exists('tick'): time.sleep(0.01)\n"  # the grandchild runs before the kill
            "while True: pass")  # fmt: skip
    if not unshare_works():
        pytest.skip("without a namespace the audit hook refuses to start processes (tested below)")
    out = invoke_tool(_python(tmp_path, timeout_s=3, confine_writes=False), {"code": code}, timeout_s=30)
    assert not out.ok and "timed out" in out.error
    time.sleep(0.3)
    size = (tmp_path / "tick").stat().st_size
    time.sleep(0.5)
    assert (tmp_path / "tick").stat().st_size == size


def test_memory_limit_stops_a_huge_allocation(tmp_path: Path) -> None:
    code = "block = bytearray(2 * 1024 ** 3)\nprint('allocated', len(block))"
    out = invoke_tool(_python(tmp_path, memory_mb=256), {"code": code}, timeout_s=30)
    assert not out.ok and "MemoryError" in out.error and "allocated" not in out.output


def test_errors_show_the_traceback_tail(tmp_path: Path) -> None:
    out = invoke_tool(_python(tmp_path), {"code": "print('before')\n1 / 0"}, timeout_s=30)
    assert not out.ok and "exit code 1" in out.error and "ZeroDivisionError" in out.error
    assert "before" in out.output and '"<agent>", line 2' in out.output


def test_output_is_capped(tmp_path: Path) -> None:
    out = invoke_tool(_python(tmp_path, max_output_chars=500), {"code": "print('y' * 100_000)"}, timeout_s=30)
    assert out.ok and out.output.startswith("y" * 500) and "output truncated" in out.output
    assert len(out.output) < 600


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
    yield server.getsockname()[1], accepted
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


def _connect_check(tool, port: int, accepted: list) -> str:
    # the control: this process can connect, so a refusal below is the sandbox's doing
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
    deadline = time.monotonic() + 3
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(accepted) == 1
    out = invoke_tool(tool, {"code": CONNECT.format(port=port)}, timeout_s=30)
    time.sleep(0.5)
    assert out.ok, out.error
    assert "BLOCKED" in out.output and "CONNECTED" not in out.output
    assert len(accepted) == 1  # the sandboxed code never reached the listener
    return out.output


def test_network_is_blocked_by_the_audit_hook(tmp_path: Path, listener) -> None:
    port, accepted = listener
    output = _connect_check(_python(tmp_path, network_namespace=False), port, accepted)
    assert "socket.connect is disabled" in output


def test_network_is_blocked_under_unshare(tmp_path: Path, listener, monkeypatch: pytest.MonkeyPatch) -> None:
    if not unshare_works():
        pytest.skip("`unshare -rn` is not permitted on this machine; the audit hook test covers it")
    monkeypatch.setattr(python_code, "_NET_EVENTS", ())  # the hook off: the namespace alone must block
    port, accepted = listener
    output = _connect_check(_python(tmp_path), port, accepted)
    assert "PermissionError" not in output  # refused by the empty network namespace, not by the hook


@pytest.mark.parametrize("options", [{"network_namespace": False}, {}], ids=["no_namespace", "default"])
def test_processes_are_refused(tmp_path: Path, options: dict) -> None:
    # a child process runs without the audit hook, so it could write anywhere (or reach the network)
    for code, event in (("import os\nprint(os.system('echo escaped'))", "os.system"),
                        ("import subprocess\nsubprocess.run(['echo', 'escaped'])", "subprocess.Popen")):  # fmt: skip
        out = invoke_tool(_python(tmp_path, **options), {"code": code}, timeout_s=30)
        assert not out.ok and f"{event} is disabled" in out.error and "escaped" not in out.output


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
def test_writes_outside_the_workspace_are_refused(tmp_path: Path, kind: str) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("kept")
    target = str(outside / "victim.txt")
    code = OUTSIDE_WRITES[kind].format(target=target, parent=str(outside), existing=str(outside / "keep.txt"))
    out = invoke_tool(_python(workspace), {"code": code}, timeout_s=30)
    assert not out.ok and "writes only inside the workspace" in out.error
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "kept"


def test_writes_inside_the_workspace_and_temp_files_work(tmp_path: Path) -> None:
    code = ("import os, tempfile, pathlib\nos.makedirs('a/b')\npathlib.Path('a/b/c.txt').write_text('fine')\n"
            "os.rename('a/b/c.txt', 'a/c.txt')\nwith tempfile.NamedTemporaryFile('w') as f:\n    f.write('tmp')\n"
            "print(open('a/c.txt').read(), tempfile.gettempdir() != '/tmp')")  # fmt: skip
    out = invoke_tool(_python(tmp_path), {"code": code}, timeout_s=30)
    assert out.ok, out.error
    assert out.output.split() == ["fine", "True"] and (tmp_path / "a" / "c.txt").read_text() == "fine"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX only")
def test_name_resolution_is_blocked(tmp_path: Path) -> None:
    code = "import socket\nsocket.getaddrinfo('localhost', 80)"
    out = invoke_tool(_python(tmp_path, network_namespace=False), {"code": code}, timeout_s=30)
    assert not out.ok and "socket.getaddrinfo is disabled" in out.error


def test_the_error_line_survives_a_long_output(tmp_path: Path) -> None:
    code = "print('z' * 50_000)\nraise ValueError('the real problem')"
    out = invoke_tool(_python(tmp_path, max_output_chars=300), {"code": code}, timeout_s=30)
    assert not out.ok and "ValueError: the real problem" in out.error

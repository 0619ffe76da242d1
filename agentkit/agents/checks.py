"""Success checks of a goal: a file exists, a file contains text, a command exits with a code — all
inside the workspace; each result is a (passed, detail) pair for the trace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentkit.agents.spec import Check, CommandCheck, FileContainsCheck, FileExistsCheck

_MAX_CHECKED_BYTES = 16 * 1024 * 1024  # a check reads at most this much of a file (an output can be huge)


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"check": self.check, "passed": self.passed, "detail": self.detail}


def _read(workspace: Path, relative: str) -> str | None:
    """The text of a workspace file, read as the file tools read (no link that leads out, no FIFO),
    or None when it is missing or refused."""
    from agentkit.tools.confined import confine, read_head
    from agentkit.tools.registry import ToolError

    try:
        head, _ = read_head(workspace, confine(workspace, relative), _MAX_CHECKED_BYTES)
    except (ToolError, OSError):
        return None
    return head.decode("utf-8", errors="replace")


def run_check(check: Check, workspace: Path) -> CheckResult:
    workspace = workspace.resolve()
    if isinstance(check, FileExistsCheck):
        ok = _read(workspace, check.file_exists) is not None
        return CheckResult(f"file_exists {check.file_exists}", ok, "found" if ok else "missing")
    if isinstance(check, FileContainsCheck):
        name = f"file_contains {check.file_contains} {check.text!r}"
        text = _read(workspace, check.file_contains)
        if text is None:
            return CheckResult(name, False, "missing")
        return CheckResult(name, check.text in text, "found" if check.text in text else "text not in file")
    assert isinstance(check, CommandCheck)  # the Check union has three members
    return _run_command(check, workspace)


def _run_command(check: CommandCheck, workspace: Path) -> CheckResult:
    """The command in the python tool's sandbox: it may run files the agent wrote (a planted json.py
    that `python3 -c 'import json'` would import, a conftest.py, a Makefile), so it gets no more than
    the agent's own code would: the workspace, no network, no host files, a scrubbed environment."""
    from agentkit.tools.sandbox import describe_exit, run_sandboxed, sandbox_problem

    command = check.command if isinstance(check.command, list) else ["/bin/sh", "-c", check.command]
    name = f"command {check.command if isinstance(check.command, str) else ' '.join(check.command)}"
    if problem := sandbox_problem():
        return CheckResult(name, False, f"not run: {problem[0]} Fix: {problem[1]}")
    try:
        run = run_sandboxed(command, workspace, timeout_s=check.timeout_s, memory_mb=check.memory_mb,
                            max_output_bytes=0)  # fmt: skip
    except OSError as exc:
        return CheckResult(name, False, f"could not start: {exc}")
    if run.timed_out:
        return CheckResult(name, False, f"timed out after {check.timeout_s:g} s")
    ok = run.returncode == check.exit_code
    return CheckResult(name, ok, f"{describe_exit(run.returncode)} (want {check.exit_code})")


def run_checks(checks: list[Check], workspace: Path) -> list[CheckResult]:
    return [run_check(c, workspace) for c in checks]

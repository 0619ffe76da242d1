"""Success checks of a goal: a file exists, a file contains text, a command exits with a code — all
inside the workspace; each result is a (passed, detail) pair for the trace."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from agentkit.agents.spec import Check, CommandCheck, FileContainsCheck, FileExistsCheck


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"check": self.check, "passed": self.passed, "detail": self.detail}


def _inside(workspace: Path, relative: str) -> Path | None:
    """The resolved path if it stays inside the workspace (symlinks followed), else None."""
    target = (workspace / relative).resolve()
    return target if target == workspace or workspace in target.parents else None


def run_check(check: Check, workspace: Path) -> CheckResult:
    workspace = workspace.resolve()
    if isinstance(check, FileExistsCheck):
        target = _inside(workspace, check.file_exists)
        ok = target is not None and target.is_file()
        return CheckResult(f"file_exists {check.file_exists}", ok, "found" if ok else "missing")
    if isinstance(check, FileContainsCheck):
        name = f"file_contains {check.file_contains} {check.text!r}"
        target = _inside(workspace, check.file_contains)
        if target is None or not target.is_file():
            return CheckResult(name, False, "missing")
        text = target.read_text(encoding="utf-8", errors="replace")
        return CheckResult(name, check.text in text, "found" if check.text in text else "text not in file")
    assert isinstance(check, CommandCheck)  # the Check union has three members
    name = f"command {check.command if isinstance(check.command, str) else ' '.join(check.command)}"
    try:
        done = subprocess.run(
            check.command,
            shell=isinstance(check.command, str),
            cwd=workspace,
            capture_output=True,
            timeout=check.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CheckResult(name, False, f"timed out after {check.timeout_s:g} s")
    except OSError as exc:
        return CheckResult(name, False, f"could not start: {exc}")
    ok = done.returncode == check.exit_code
    return CheckResult(name, ok, f"exit {done.returncode} (want {check.exit_code})")


def run_checks(checks: list[Check], workspace: Path) -> list[CheckResult]:
    return [run_check(c, workspace) for c in checks]

"""One table from exception type to (exit code, one-line message); tracebacks only when debugging.

Exit codes: 2 bad input (a config field, an id, a file), 1 runtime failure, 130 interrupted.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

DEBUG_ENV = "AGENTKIT_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def _pydantic_line(exc: Any) -> str:
    """All field errors on one line: `Model: field 'a.b': message; field 'c': message`."""
    from agentkit.config_io import validation_line

    return f"{exc.title}: {validation_line(exc)}. Fix: correct, add or remove those fields."


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, message) for an exception escaping a command."""
    import typer
    from pydantic import ValidationError

    from agentkit.errors import AgentkitError

    if isinstance(exc, AgentkitError):
        return exc.exit_code, exc.one_line()
    if isinstance(exc, ValidationError):
        return 2, _pydantic_line(exc)
    if isinstance(exc, typer.TyperException):  # typer's click: usage errors, bad parameters
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
            return 0, ""
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "agentkit"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return 2, f"{message} Fix: see `{command} --help`."
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        return 130, "interrupted."
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return 1, (
            f"no space left on device while writing {exc.filename or 'the result'}; nothing was registered. "
            "Fix: free disk space, then rerun (`agentkit tune CONFIG --resume` continues from the last checkpoint)."
        )
    if isinstance(exc, FileNotFoundError):
        return 2, f"{exc.filename or exc}: no such file. Fix: check the path."
    return 1, f"{type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)"


def report(exc: BaseException) -> int:
    code, message = describe(exc)
    if message:
        print(f"error: {message}", file=sys.stderr)
    return code

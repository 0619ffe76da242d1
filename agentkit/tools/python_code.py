"""The `python` tool (off by default): the agent's code runs in `python -I` inside the bubblewrap
sandbox of `sandbox.py`, with a wall-clock timeout and resource limits. No sandbox, no tool."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.errors import BadInputError
from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool
from agentkit.tools.sandbox import MAX_TASKS, OUTPUT_FILE_LIMIT, describe_exit, interpreter, run_sandboxed, sandbox_problem

# Runs before the agent's code, which arrives as sys.argv[1] (so a traceback shows `<agent>` lines).
# Not a guard: the limit is the kernel's, and nothing here can be undone to reach outside. RLIMIT_NPROC
# is set here, inside the user namespace: set before bwrap, it would count every process the user runs
# on the host. The kernel exempts real root from it; the run's cgroup (sandbox.py) caps tasks then.
_PRELUDE = f"""\
import resource, sys
resource.setrlimit(resource.RLIMIT_NPROC, ({MAX_TASKS}, {MAX_TASKS}))
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
_REMOVED_OPTIONS = ("network_namespace", "confine_writes")


class PythonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=10.0, gt=0, le=600, description="wall-clock seconds per run")
    memory_mb: int = Field(
        default=512, ge=64, description="memory of each process (RLIMIT_AS), and of the whole sandbox where a cgroup can be made"
    )
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


def run_python(code: str, workspace: Path, options: PythonOptions) -> str:
    """Run `code` in the sandbox; stdout+stderr (head) when it exits 0, else a ToolError carrying that
    output. Refuses (ToolError) where the sandbox cannot start: never runs the code unconfined."""
    problem = sandbox_problem()
    if problem is not None:
        raise ToolError(problem[0], fix=problem[1])
    exe, _ = interpreter()
    run = run_sandboxed([exe, "-I", "-u", "-c", _PRELUDE, code], workspace, timeout_s=options.timeout_s,
                        memory_mb=options.memory_mb, max_output_bytes=options.max_output_chars * 4 + 4)  # fmt: skip
    text = run.head.decode("utf-8", errors="replace")
    if len(text) > options.max_output_chars or len(run.head) < run.size:
        text = text[: options.max_output_chars] + f"\n[... output truncated: {run.size} bytes in all]"
    if run.timed_out:
        raise ToolError(f"python timed out after {options.timeout_s:g}s and was killed.", output=text,
                        fix="make the code finish sooner (no endless loops, less work).")  # fmt: skip
    if run.returncode != 0:
        last = next((line for line in reversed(run.tail.strip().splitlines()) if line.strip()), "")
        if run.returncode == -signal.SIGXFSZ:
            last = f"a file it wrote passed {OUTPUT_FILE_LIMIT // 2**20} MB"
        raise ToolError(f"python failed ({describe_exit(run.returncode)}, {run.seconds:.1f}s): {last[:300]}",
                        output=text)  # fmt: skip
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

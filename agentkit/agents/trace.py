"""Runs on disk: `<runs>/<run-id>/trace.jsonl` (one JSON record per line: start, step..., end) and
`state.sqlite` (the LangGraph checkpoint that `--resume` continues from).

Records: `start` {run_id, name, goals, model, tools, tool_schemas, workspace, goal_file, time};
`step` {step, goal_index, goal, thought, action, arguments, observation, ok, refused, critique,
tokens {input, output}, seconds, messages (what the model saw)}; `resume` {time, from_step};
`end` {status, steps, tokens, seconds, final_answer, checks}. The default runs root is `./runs`
(the current directory), or $AGENTKIT_RUNS.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError

RUNS_ENV = "AGENTKIT_RUNS"
TRACE = "trace.jsonl"
STATE = "state.sqlite"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs")


def new_run_id(name: str) -> str:
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())[:24].strip("-") or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(4)}"


class RunStore:
    """A runs root: one folder per run. Construction does no I/O."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()

    def path(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise BadInputError(f"Invalid run id {run_id!r}.", fix="use an id from `agentkit runs list`.")
        return self.root / run_id

    def create(self, name: str) -> tuple[str, Path]:
        """A new run id and its folder, made here: two runs started in one second never share one."""
        while True:
            run_id = new_run_id(name)
            folder = self.path(run_id)
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return run_id, folder

    def existing(self, run_id: str) -> Path:
        folder = self.path(run_id)
        if not (folder / TRACE).is_file():
            raise BadInputError(
                f"No run {run_id!r} under {self.root.resolve()}.",
                fix="see `agentkit runs list` (pass --runs-dir or set $AGENTKIT_RUNS if runs live elsewhere).",
            )
        return folder

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / TRACE).is_file())

    def records(self, run_id: str) -> list[dict[str, Any]]:
        return list(read_trace(self.existing(run_id) / TRACE))

    def summary(self, run_id: str) -> dict[str, Any]:
        """start + end merged: id, name, status ('running' or 'interrupted?' without an end), steps..."""
        records = self.records(run_id)
        start = next((r for r in records if r.get("type") == "start"), {})
        end = next((r for r in reversed(records) if r.get("type") == "end"), None)
        steps = [r for r in records if r.get("type") == "step"]
        return {
            "run_id": run_id,
            "name": start.get("name", "?"),
            "started": start.get("time"),
            "goals": start.get("goals", []),
            "status": end["status"] if end else "incomplete",
            "steps": len(steps),
            "tokens": end["tokens"] if end else sum(s["tokens"]["input"] + s["tokens"]["output"] for s in steps),
            "seconds": end["seconds"] if end else round(sum(s["seconds"] for s in steps), 2),
            "final_answer": end.get("final_answer") if end else None,
        }


def read_trace(path: Path) -> Iterator[dict[str, Any]]:
    """The records (JSON objects) of a trace; a line cut by a kill mid-write, bytes that are not
    UTF-8 or a line that is not an object are passed over, and the records around them stand."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if line:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record


class TraceWriter:
    """Appends records to one trace.jsonl; each line is flushed and fsynced, so a kill loses at most
    the line being written."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def truncate_to(self, steps: int, state: dict[str, Any] | None = None) -> None:
        """Keep start/resume records and steps 1..`steps` (the checkpointed ones), drop the end record:
        a resumed run redoes a step that ran after its last checkpoint, and must not log it twice.
        Plans made before step `steps` stay; one made after it stays only if it is the plan in the
        checkpointed `state` (the same goal and steps, no re-plan pending) — else the resumed run
        makes it again."""
        state = state or {}
        records = list(read_trace(self.path))

        def checkpointed(r: dict[str, Any]) -> bool:
            return (not state.get("replan_reason") and r.get("goal_index") == state.get("planned_goal")
                    and r.get("steps") == state.get("plan")
                    and r.get("replan", 0) in (0, state.get("replans", 0)))  # fmt: skip

        last_plan = max((i for i, r in enumerate(records) if r["type"] == "plan" and r.get("after_step") == steps
                         and checkpointed(r)), default=None)  # fmt: skip
        kept = [
            r for i, r in enumerate(records)
            if r["type"] in ("start", "resume") or (r["type"] == "step" and r["step"] <= steps)
            or (r["type"] == "plan" and (r.get("after_step", 0) < steps or i == last_plan))
        ]  # fmt: skip
        # a new file ("x": O_EXCL, never a planted link) with a random name, renamed over the trace
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        with tmp.open("x", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in kept))
        os.replace(tmp, self.path)

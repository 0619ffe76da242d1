"""`agentkit run GOAL.yaml [--resume RUN_ID] [--json] [--max-steps N]`: run an agent on a goal file.

Exit codes: 0 the checks passed (or it finished and has no checks), 3 checks failed / a budget ran out /
a loop was detected, 2 a bad goal file, 130 Ctrl-C (resume with --resume), 1 a runtime error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

RunsDirOpt = Annotated[
    Path | None,
    typer.Option("--runs-dir", help="Runs root [$AGENTKIT_RUNS, else ./runs in the current directory]."),
]


def run(
    goal_file: Annotated[Path, typer.Argument(help="A goal.yaml (goals, model, tools, budgets, workspace, checks).")],
    resume: Annotated[str | None, typer.Option("--resume", help="Continue an interrupted run by its id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {run_id, status, steps, tokens, seconds} on stdout.")] = False,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Override budgets.max_steps.")] = None,
    runs_dir: RunsDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream steps to stderr.")] = False,
) -> int:
    """Run an autonomous agent toward the goals of GOAL_FILE; every step goes to runs/<run-id>/trace.jsonl.

    Exit 0: checks passed (or finished, no checks); 3: checks failed, budget ran out or loop; 2: bad goal
    file; 130: Ctrl-C (continue with --resume RUN_ID).
    """
    from rich.console import Console
    from rich.markup import escape

    from agentkit.agents.agent import SUCCESS, Agent
    from agentkit.agents.console import print_end, print_plan, print_step
    from agentkit.agents.spec import load_goal

    console = Console(stderr=True, quiet=quiet)
    spec, workspace = load_goal(goal_file)
    if max_steps is not None:
        spec = spec.model_copy(update={"budgets": spec.budgets.model_copy(update={"max_steps": max_steps})})
    agent = Agent.from_spec(spec, workspace=workspace, runs_dir=runs_dir, goal_file=goal_file)
    console.print(f"[bold]{spec.name}[/bold]: {len(spec.goals)} goal(s), model {spec.model_spec().model}, "
                  f"workspace {workspace}")  # fmt: skip
    end: dict = {}
    records = agent.stream(resume=resume)
    try:
        for record in records:
            if record["type"] == "step":
                print_step(console, record)
            elif record["type"] == "plan":
                print_plan(console, record)
            else:
                end = record
    except KeyboardInterrupt:
        records.close()  # Ctrl-C may land here, between steps: close the trace as interrupted
        # soft_wrap: the command stays on one line, to be copied whole however narrow the terminal
        console.print(f"[yellow]interrupted[/yellow]; continue with: agentkit run {escape(str(goal_file))} "
                      f"--resume {agent.run_id}", soft_wrap=True)  # fmt: skip
        if as_json and agent.run_id:
            summary = agent.store.summary(agent.run_id)
            typer.echo(json.dumps({k: summary[k] for k in ("run_id", "status", "steps", "tokens", "seconds")}))
        return 130
    trace_path = agent.store.path(end["run_id"]) / "trace.jsonl"
    records = agent.store.records(end["run_id"])
    end = next(r for r in reversed(records) if r["type"] == "end")
    print_end(console, end, trace_path)
    if as_json:
        typer.echo(json.dumps({k: end[k] for k in ("run_id", "status", "steps", "tokens", "seconds")}))
    if end["status"] in SUCCESS:
        return 0
    return 1 if end["status"] == "error" else 3

"""`agentkit runs list | show RUN_ID | export --format sft|dpo -o FILE`: recorded agent runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agentkit.cli.run_cmd import RunsDirOpt

app = typer.Typer(help="Recorded agent runs (runs/<run-id>/trace.jsonl).", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _store(runs_dir: Path | None):  # -> RunStore
    from agentkit.agents.trace import RunStore

    return RunStore(runs_dir)


@app.command("list")
def list_runs(runs_dir: RunsDirOpt = None, as_json: JsonOpt = False) -> None:
    """Every run under the runs root: id, name, status, steps, tokens, seconds."""
    store = _store(runs_dir)
    rows = [store.summary(run_id) for run_id in store.run_ids()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo(f"no runs under {store.root.resolve()}")
        return
    for r in rows:
        typer.echo(f"{r['run_id']}  {r['status']:<16} {r['steps']:>3} steps {r['tokens']:>6} tok "
                   f"{r['seconds']:>7.1f}s  {r['name']}")  # fmt: skip


@app.command("show")
def show(run_id: Annotated[str, typer.Argument(help="A run id from `agentkit runs list`.")],
         runs_dir: RunsDirOpt = None, as_json: JsonOpt = False) -> None:  # fmt: skip
    """A run's goals and steps (action, arguments, observation) and its final status."""
    from agentkit.agents.console import plan_lines
    from agentkit.agents.prompting import clip, render_action

    store = _store(runs_dir)
    records = store.records(run_id)
    if as_json:
        typer.echo(json.dumps({"summary": store.summary(run_id), "records": records}, indent=2, ensure_ascii=False))
        return
    summary = store.summary(run_id)
    typer.echo(f"run {run_id}: {summary['name']}, status {summary['status']}, {summary['steps']} steps, "
               f"{summary['tokens']} tokens, {summary['seconds']}s")  # fmt: skip
    for i, goal in enumerate(summary["goals"], 1):
        typer.echo(f"  goal {i}: {goal}")
    for r in records:
        if r["type"] == "step":
            typer.echo(f"  {r['step']:>3}. [{'ok' if r['ok'] else 'err'}] {render_action(r['action'], r['arguments'])}")
            typer.echo(f"       -> {clip(r['observation'], 200)}")
        elif r["type"] == "plan":
            for line in plan_lines(r):
                typer.echo(f"  {line}")
        elif r["type"] == "resume":
            typer.echo(f"  -- resumed after step {r['from_step']}")
        elif r["type"] == "end":
            for c in r.get("checks") or []:
                typer.echo(f"  check {c['check']}: {'pass' if c['passed'] else 'fail'} ({c['detail']})")
            if r.get("final_answer"):
                typer.echo(f"  answer: {clip(str(r['final_answer']), 300)}")


@app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="sft (successful runs) | dpo (success vs failure).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The JSONL file to write.")],
    runs_dir: RunsDirOpt = None,
) -> None:
    """Turn runs into training data: OpenAI-format tool-call conversations (sft) or preference pairs (dpo)."""
    from agentkit.agents.export import FORMATS, export_runs
    from agentkit.errors import BadInputError

    if fmt not in FORMATS:
        raise BadInputError(f"Unknown export format {fmt!r}.", fix=f"use --format {' or '.join(FORMATS)}.")
    store = _store(runs_dir)
    count = export_runs(store, fmt, output)
    typer.echo(f"wrote {count} {fmt} rows from {len(store.run_ids())} runs to {output}")

"""Rich rendering of agent steps on stderr: one line per step (action, arguments, observation) and
a closing line with the status."""

from __future__ import annotations

from typing import Any

from agentkit.agents.prompting import clip, render_action

_STYLE = {"succeeded": "green", "finished": "green", "failed": "red", "budget_exhausted": "yellow",
          "loop_detected": "yellow", "interrupted": "yellow", "error": "red"}  # fmt: skip


def print_step(console: Any, record: dict[str, Any]) -> None:
    from rich.markup import escape

    mark = "[green]ok[/green]" if record["ok"] else ("[red]refused[/red]" if record.get("refused") else "[red]err[/red]")
    tokens = record["tokens"]["input"] + record["tokens"]["output"]
    console.print(
        f"[bold]step {record['step']}[/bold] [dim](goal {record['goal_index'] + 1}, {record['seconds']:.1f}s, "
        f"{tokens} tok)[/dim] {escape(render_action(record['action'], record['arguments']))} {mark}"
    )
    if record.get("thought"):
        console.print(f"  [dim]thought:[/dim] {escape(clip(record['thought'], 200))}")
    console.print(f"  [dim]->[/dim] {escape(clip(record['observation'], 200))}")
    for note in record.get("critique", []):
        console.print(f"  [dim]critique: {escape(note)}[/dim]")


def plan_lines(record: dict[str, Any]) -> list[str]:
    """A plan record as plain lines: a heading (re-plan and why) and one numbered line per step."""
    head = f"plan for goal {record['goal_index'] + 1}"
    if record.get("replan"):
        head = f"re-plan {record['replan']} for goal {record['goal_index'] + 1} ({clip(str(record.get('reason')), 160)})"
    return [head, *(f"  {i}. {s['intent']} [{s['tool'] or 'any tool'}]" for i, s in enumerate(record["steps"], 1))]


def print_plan(console: Any, record: dict[str, Any]) -> None:
    from rich.markup import escape

    head, *steps = plan_lines(record)
    console.print(f"[bold cyan]{escape(head)}[/bold cyan] [dim]({record['seconds']:.1f}s)[/dim]")
    for line in steps:
        console.print(escape(line))


def print_end(console: Any, end: dict[str, Any], trace_path: Any) -> None:
    from rich.markup import escape

    style = _STYLE.get(end["status"], "white")
    console.print(
        f"[{style}][bold]{end['status']}[/bold][/{style}] after {end['steps']} steps, {end['tokens']} tokens, "
        f"{end['seconds']:.1f}s  run {end['run_id']}  trace {escape(str(trace_path))}",
        soft_wrap=True,  # the run id and path stay whole, to be copied
    )
    for check in end.get("checks") or []:
        mark = "[green]pass[/green]" if check["passed"] else "[red]fail[/red]"
        console.print(f"  check {escape(check['check'])}: {mark} ({escape(check['detail'])})")
    if end.get("final_answer"):
        console.print(f"  answer: {escape(clip(str(end['final_answer']), 300))}")

"""`agentkit improve SUITE.yaml [--rounds N] [--workers N]`: run -> data -> tune -> evaluate -> promote, resumable.

Exit codes: 0 the rounds ran (promoted or not: see the log), 2 a bad suite or nothing to learn from
(no train run succeeded; nothing was tuned), 1 a runtime error. A killed run resumes where it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def improve(
    suite_file: Annotated[Path, typer.Argument(help="A suite.yaml: model, train and held-out goals, tune, promote.")],
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds of this suite to have done in all.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rounds' log rows as JSON on stdout.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help=(
        "Goal runs at a time in collect and evaluate, each worker a process with its own copy of the model "
        "(one generation thread each). Each run keeps its seed; it may change between resumes."))] = 1,
) -> None:
    """Make the agent better from its own runs: collect sampled runs of the train goals, tune a LoRA on the
    successes, evaluate it against the champion on held-out goals, and promote it behind the suite's alias
    only if it wins by the suite's margin. State lives in $AGENTKIT_HOME/improve/<name>/; re-run to resume."""
    from rich.console import Console
    from rich.markup import escape

    from agentkit.agents.improve import Improver

    console = Console(stderr=True)
    improver = Improver(suite_file, say=lambda line: console.print(escape(line)), workers=workers)
    console.print(f"[bold]{improver.suite.name}[/bold]: {len(improver.goals.train)} train goals, "
                  f"{len(improver.goals.heldout)} held-out, model {improver.suite.model.model}, state {improver.folder}")  # fmt: skip
    log = improver.run(rounds)
    if as_json:
        typer.echo(json.dumps(log, indent=1))
        return
    for row in log:
        console.print(
            f"round {row['round']}: {row['train_succeeded']}/{row['train_runs']} train runs ok, "
            f"{row.get('sft_rows')} SFT rows, loss {row.get('train_loss_first')} -> {row.get('train_loss_last')}, "
            f"held-out {row['heldout_before']:.2f} -> {row['heldout_after']:.2f} "
            f"({row['gain']:+.3f} +- {row['se']:.3f}), {'promoted ' + row['candidate'] if row['promoted'] else 'not promoted'}",
            soft_wrap=True,
        )

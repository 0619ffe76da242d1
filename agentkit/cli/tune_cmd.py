"""`agentkit tune CONFIG.yaml`: train with a built-in tuning method and register the result."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer


def tune(
    config: Annotated[Path, typer.Argument(help="A tune.yaml (base, task, method, <method block>, data, train, output).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the registered card as JSON.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Draw the progress bar (stderr).")] = True,
) -> None:
    """Fine-tune a registry model (LoRA, ...) and register the adapter with its lineage."""
    from rich.console import Console

    from agentkit.tuning import TuneConfig, train

    console = Console(stderr=True)
    spec = TuneConfig.from_yaml(config)
    console.print(f"tuning [bold]{spec.base}[/bold] with [bold]{spec.method}[/bold] -> {spec.output}")
    card = train(spec, resume=resume, progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, the main process reports
        return
    if as_json:
        typer.echo(json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in card.metrics.items())
    kind = f"{card.kind.value} of {card.base}" if card.base else card.kind.value
    typer.echo(f"registered {card.id} ({kind}, {card.method}): {metrics}")
    from agentkit.registry import Registry

    console.print(f"metrics.json, training_curves.png: {Registry.default().path(card.id)}")

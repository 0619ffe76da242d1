"""`agentkit tune CONFIG.yaml`: train with a built-in tuning method and register the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def tune(
    config: Annotated[Path, typer.Argument(help="A tune.yaml (base, task, method, <method block>, data, train, output).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the registered card as JSON.")] = False,
) -> None:
    """Fine-tune a registry model (LoRA, ...) and register the adapter with its lineage."""
    from rich.console import Console

    from agentkit.tuning import TuneConfig, train

    console = Console(stderr=True)
    spec = TuneConfig.from_yaml(config)
    console.print(f"tuning [bold]{spec.base}[/bold] with [bold]{spec.method}[/bold] -> {spec.output}")
    card = train(spec, resume=resume)
    if as_json:
        typer.echo(json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in card.metrics.items())
    typer.echo(f"registered {card.id} ({card.kind.value} of {card.base}, {card.method}): {metrics}")

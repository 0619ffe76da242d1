"""`agentkit tune CONFIG.yaml`: train with a built-in tuning method and register the result; a
pipeline file (`stages:`) runs its stages in order (RLHF: sft -> reward -> ppo)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer


def tune(
    config: Annotated[Path, typer.Argument(help="A tune.yaml (base, task, method, <method block>, data, train, "
                                                "output), or a pipeline.yaml (name, stages).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the registered card as JSON.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Draw the progress bar (stderr).")] = True,
    stage: Annotated[str | None, typer.Option("--stage", help="Pipelines: re-run this stage alone.")] = None,
) -> None:
    """Fine-tune a registry model (LoRA, ..., RLHF stages) and register the result with its lineage."""
    from rich.console import Console

    from agentkit.tuning import TuneConfig, train
    from agentkit.tuning.pipeline import is_pipeline_file

    console = Console(stderr=True)
    if is_pipeline_file(config):
        _pipeline(config, stage=stage, resume=resume, as_json=as_json, progress=progress, console=console)
        return
    if stage is not None:
        from agentkit.errors import BadInputError

        raise BadInputError(f"--stage {stage}: {config} is a single tune config, not a pipeline.",
                            fix="drop --stage, or pass a pipeline.yaml (with `stages:`).")  # fmt: skip
    spec = TuneConfig.from_yaml(config)
    console.print(f"tuning [bold]{spec.base}[/bold] with [bold]{spec.method}[/bold] -> {spec.output}")
    card = train(spec, resume=resume, progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, the main process reports
        return
    if as_json:
        typer.echo(json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    typer.echo(_summary(card))
    from agentkit.registry import Registry

    console.print(f"metrics.json, training_curves.png: {Registry.default().path(card.id)}")


def _summary(card: Any) -> str:
    from agentkit.registry.card import flat_metrics

    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in flat_metrics(card.metrics).items())  # fmt: skip
    kind = f"{card.kind.value} of {card.base}" if card.base else card.kind.value
    return f"registered {card.id} ({kind}, {card.method}): {metrics}"


def _pipeline(path: Path, *, stage: str | None, resume: bool, as_json: bool, progress: bool, console: Any) -> None:
    from agentkit.registry import Registry
    from agentkit.tuning.pipeline import Pipeline

    pipeline = Pipeline.from_yaml(path)
    registry = Registry.default()
    names = " -> ".join(s.name for s in pipeline.stages)
    console.print(f"pipeline [bold]{pipeline.spec.name}[/bold]: {names}" + (f" (only {stage})" if stage else ""))
    results = pipeline.run(registry, only=stage, resume=resume, progress=progress,
                           on_stage=lambda name, msg: console.print(f"[bold]{name}[/bold]: {msg}"))  # fmt: skip
    if as_json:
        typer.echo(json.dumps([{"stage": r.name, "ran": r.ran, "card": r.card.model_dump(mode="json")} for r in results],
                              indent=2, ensure_ascii=False))  # fmt: skip
        return
    for r in results:
        typer.echo(f"{r.name}: " + (_summary(r.card) if r.ran else f"skipped ({r.output} is registered)"))

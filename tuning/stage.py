"""What every tuning stage shares, whatever loop trains it (the HF Trainer, TRL's trainers, the RL
loops): the check that its output id is free, its progress bar, and the curves it saves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import Registry

Points = list[tuple[float, float]]


def check_output_free(registry: Registry, output: str) -> None:
    """Before any weights load: a taken `output:` fails now, not after the training."""
    if output in registry:
        raise BadInputError(f"output {output!r} already exists in the registry.",
                            fix=f"choose another `output:` or `agentkit models rm {output}`.")  # fmt: skip


def progress_bar(label: str, total: int, *, completed: int = 0, eta: bool = False) -> tuple[Any, Any]:
    """A started rich bar on stderr (steps, a status field, elapsed, ETA when asked) and its task;
    update with `bar.update(task, completed=..., status=...)`, end with `bar.stop()`."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn(f"[bold]{label}[/bold]"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[status]}"), TimeElapsedColumn()]  # fmt: skip
    if eta:
        columns += [TextColumn("eta"), TimeRemainingColumn()]
    bar = Progress(*columns, console=Console(stderr=True), transient=False)
    bar.start()
    return bar, bar.add_task(label, total=total, completed=completed, status="")


def plot_panels(panels: dict[str, dict[str, Points]], path: Path, *, trend: bool = False) -> None:
    """One panel per title, each with its named (step, value) series; a PNG written whole (temp file,
    then rename). `trend`: over a noisy series of 10 points or more, a trailing running mean too."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # no display: render to a file
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {title: series for title, series in panels.items() if any(series.values())}
    cols = max(1, min(3, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, shown.items()):
        for name, points in series.items():
            if not points:
                continue
            ax.plot(*zip(*points), marker="." if len(points) < 40 else None, label=name,
                    alpha=0.5 if trend and len(points) >= 10 else 1)  # fmt: skip
            if trend and len(points) >= 10:  # batches of a few prompts are noisy: the trend
                window = max(3, len(points) // 6)
                values = [v for _, v in points]
                means = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
                         for i in range(len(values))]  # fmt: skip
                ax.plot([s for s, _ in points], means, color="C3", label=f"mean of last {window}")
        ax.set(xlabel="step", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)

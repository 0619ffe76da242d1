"""What a run reports while and after it trains: classification metrics for each eval, a rich
progress bar with ETA, and the artifacts saved with the result (metrics.json, training_curves.png)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"


def classification_metrics(eval_pred: Any) -> dict[str, float]:
    """Accuracy and macro-F1 (the mean of each class's F1, so a majority-class guesser scores low)
    from HF's EvalPrediction: predictions (N, num_labels) logits, label_ids (N,)."""
    import numpy as np

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    pred = np.asarray(logits).argmax(-1)
    labels = np.asarray(labels)
    f1s = []
    for c in np.unique(np.concatenate([labels, pred])):
        tp = float(((pred == c) & (labels == c)).sum())
        fp = float(((pred == c) & (labels != c)).sum())
        fn = float(((pred != c) & (labels == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": float((pred == labels).mean()), "f1": float(np.mean(f1s))}


def progress_callback() -> Any:
    """A TrainerCallback drawing one rich progress bar (steps, loss, elapsed, ETA) on the main
    process. Imported lazily: transformers is heavy."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.progress: Any = None
            self.task: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]train[/bold]"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, status="")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if self.progress is None or not logs:
                return
            shown = {k: v for k, v in logs.items() if k in ("loss", "eval_loss", "eval_accuracy", "eval_f1")}
            if shown:
                self.progress.update(self.task, status=" ".join(f"{k}={v:.4g}" for k, v in shown.items()))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)
                self.progress.stop()
                self.progress = None

    return RichProgress()


def curves(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series from the Trainer's log: train loss, eval loss and eval metrics."""
    series: dict[str, list[tuple[float, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        for key, value in entry.items():
            wanted = key == "loss" or (key.startswith("eval_") and key not in _EVAL_BOOKKEEPING)
            if wanted and step is not None and isinstance(value, (int, float)):
                series.setdefault(key, []).append((float(step), float(value)))
    return series


_EVAL_BOOKKEEPING = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch"}


def write_artifacts(folder: Path, metrics: dict[str, Any], log_history: list[dict[str, Any]]) -> None:
    """metrics.json (final metrics + every eval) and training_curves.png into `folder`."""
    series = curves(log_history)
    evals = [{k: v for k, v in e.items() if k.startswith("eval_") or k in ("step", "epoch")}
             for e in log_history if "eval_loss" in e]  # fmt: skip
    (folder / METRICS_FILE).write_text(json.dumps({"final": metrics, "evals": evals}, indent=2))
    _plot(series, folder / CURVES_FILE)


def _plot(series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")  # no display: render to a file
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = {k: v for k, v in series.items() if k.endswith("loss")}
    scores = {k: v for k, v in series.items() if not k.endswith("loss")}
    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(10 if scores else 6, 4), squeeze=False)
    for name, points in losses.items():
        axes[0][0].plot(*zip(*points), marker="o" if name != "loss" else None, label=name)
    axes[0][0].set(xlabel="step", ylabel="loss", title="loss")
    axes[0][0].legend()
    if scores:
        for name, points in scores.items():
            axes[0][1].plot(*zip(*points), marker="o", label=name.removeprefix("eval_"))
        axes[0][1].set(xlabel="step", title="eval metrics")
        axes[0][1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

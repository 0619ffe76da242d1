"""What a run reports while and after it trains: classification metrics for each eval, a rich
progress bar with ETA, and the artifacts saved with the result (metrics.json, training_curves.png)."""

from __future__ import annotations

import json
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
            from agentkit.tuning.stage import progress_bar

            self.progress, self.task = progress_bar("train", state.max_steps, completed=state.global_step, eta=True)

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
    """The losses in one panel, the eval metrics in another."""
    from agentkit.tuning.stage import plot_panels

    panels = {"loss": {k: v for k, v in series.items() if k.endswith("loss")},
              "eval metrics": {k.removeprefix("eval_"): v for k, v in series.items() if not k.endswith("loss")}}  # fmt: skip
    plot_panels(panels, path)

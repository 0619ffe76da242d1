"""What every tuning stage shares, whatever loop trains it (the HF Trainer, TRL's trainers, the RL
loops): where it starts, the check that its output id is free, its progress bar, the curves it
saves, and the registered result (weights, tokenizer, metrics.json, curves and card)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import EntryKind, ModelCard, ModelTask, Registry, SourceInfo
from agentkit.registry.card import Lineage, StartLineage



@dataclass(frozen=True)
class StartPoint:
    """Where a stage starts: the entry named in its `base:` (a causal_lm base, or an adapter of one,
    such as the SFT stage's LoRA) and the base entry that holds the full weights. An adapter start is
    folded into the base weights for training, so the stage's own LoRA (or full training) sits on
    top of it, and "adapter disabled" (DPO's and the RL stages' reference) means the start model."""

    entry: ModelCard
    base: ModelCard

    @property
    def adapter(self) -> str | None:
        """The start adapter's id, when the start is an adapter."""
        return self.entry.id if self.entry.kind is EntryKind.ADAPTER else None

    @classmethod
    def resolve(cls, registry: Registry, entry_id: str, *, field: str = "base", fold: bool = True,
                plain_lora: bool = False) -> StartPoint:  # fmt: skip
        """Check from the cards (no weights read) that `entry_id` is a causal LM to start from.
        `fold`: the stage folds a start adapter into the base weights, so it must be a LoRA (DPO that
        continues its start adapter does not fold). `plain_lora`: and without DoRA or modules_to_save
        (the RL stages save their result folded with it into one LoRA, exact only for plain LoRA)."""
        card = registry.verify(entry_id)
        if card.task is not ModelTask.CAUSAL_LM or (card.kind is EntryKind.ADAPTER and card.base is None):
            raise BadInputError(
                f"`{field}: {entry_id}` is a {card.task.value} {card.kind.value}; this stage starts from a "
                "chat (causal_lm) model or adapter.",
                fix="set it to the SFT stage's output, or a causal_lm base such as smollm2-135m-instruct.",
            )
        if card.kind is EntryKind.BASE:
            return cls(card, card)
        if fold or plain_lora:
            from agentkit.registry.adapters import ADAPTER_CONFIG

            peft = json.loads((registry.path(entry_id) / ADAPTER_CONFIG).read_text())
            odd = [why for why, bad in (("DoRA", plain_lora and peft.get("use_dora")),
                                        ("modules_to_save", plain_lora and peft.get("modules_to_save"))) if bad]  # fmt: skip
            if peft.get("peft_type") != "LORA" or odd:
                raise BadInputError(
                    f"`{field}: {entry_id}` is a {peft.get('peft_type')} adapter{' with ' + ' and '.join(odd) if odd else ''}; "
                    f"this stage folds its start into the base weights, which needs a {'plain ' if plain_lora else ''}"
                    "LoRA adapter or a full model.",
                    fix=f"train the SFT stage with {'plain ' if plain_lora else ''}LoRA, or "
                    f"`agentkit models merge {entry_id}` and use the merged id.",
                )
        return cls(card, registry.verify(card.base))

    def load(self, registry: Registry, auto_class: Any = None, *, fold: bool = True, **kwargs: Any) -> tuple[Any, Any]:
        """(model, tokenizer): the base loaded with `auto_class` (default AutoModelForCausalLM), fp32,
        with the start adapter folded in unless `fold` is False; the tokenizer saved with the start
        entry (the one its chat template trained with)."""
        from agentkit.registry.adapters import fold_lora
        from agentkit.registry.loading import load_tokenizer, load_weights

        if auto_class is None:
            from transformers import AutoModelForCausalLM as auto_class
        model = load_weights(registry.path(self.base.id), auto_class, **kwargs)
        if fold and self.adapter:
            model = fold_lora(model, registry.path(self.adapter))
        tokenizer = load_tokenizer(registry.path(self.entry.id))
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        return model, tokenizer

    def lineage(self, *, folded: bool = True) -> StartLineage:
        """What the new entry records about where it started; `folded` False when the start adapter
        was continued rather than folded in (DPO on an SFT LoRA)."""
        return StartLineage(entry=self.entry.id, method=self.entry.method, base=self.base.id,
                            folded_adapter=self.adapter if folded else None, weights_sha256=self.entry.weights)  # fmt: skip

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


def register_result(
    registry: Registry,
    output: str,
    *,
    save: Callable[[Path], None],
    tokenizer: Any,
    task: str,
    method: str,
    base: str | None,
    metrics: dict[str, Any],
    lineage: Lineage,
    source_ref: str,
    log: tuple[str, list[dict[str, Any]]] | None = None,
    artifacts: Callable[[Path], None] | None = None,
) -> ModelCard:
    """Publish a trained stage as registry entry `output`, all or nothing: `save(stage)` writes the
    weights (a PEFT adapter when `base` is set, else a full model), then the tokenizer with its chat
    template, the training log (`log`: file name and records), metrics.json and the curves
    (`artifacts(stage)`; by default from the HF Trainer's log), and last the card."""
    from agentkit.tuning.reporting import write_artifacts

    def write(stage: Path) -> dict[str, Any]:
        save(stage)
        tokenizer.save_pretrained(stage)
        if log is not None:
            (stage / log[0]).write_text(json.dumps(log[1], indent=1))
        if artifacts is not None:
            artifacts(stage)
        else:
            write_artifacts(stage, metrics, log[1] if log else [])
        return {
            "kind": "adapter" if base else "base",
            "task": task,
            "base": base,
            "method": method,
            "source": SourceInfo(type="tuning", ref=source_ref),
            "chat_template": tokenizer.chat_template,
            "metrics": metrics,
            "lineage": lineage,
        }

    return registry.create_entry(output, write)

"""The process one fine-tuning job runs in: `agentkit tune TUNE_YAML` plus a Trainer callback that
appends every logged step (loss, learning rate) and eval (eval_loss, ...) to EVENTS as a JSON line,
which the server tails. Run as `python -m agentkit.server.jobs_worker TUNE_YAML EVENTS`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

# Trainer bookkeeping in the logs: timings and counters, not metrics of the model.
_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "tokens_per_second", "total_flos",
                "num_input_tokens_seen")  # fmt: skip


def metrics_line(logs: dict[str, Any], step: int, total_steps: int) -> dict[str, Any] | None:
    """One Trainer log as an event's data, in OpenAI's names (train_loss, valid_loss, ...); None
    for the logs that are neither a training step nor an eval (the closing train_runtime one)."""
    numbers = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v) and not k.endswith(_BOOKKEEPING)}  # fmt: skip
    if "loss" in numbers:
        data = {"train_loss": numbers.pop("loss"), **numbers}
    elif "eval_loss" in numbers:
        data = {f"valid_{k.removeprefix('eval_')}": v for k, v in numbers.items() if k.startswith("eval_")}
    else:
        return None
    return {"type": "metrics", "step": step, "total_steps": total_steps, **data}


def events_callback(path: Path) -> Any:
    from transformers import TrainerCallback

    class JsonLinesEvents(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            line = metrics_line(logs, state.global_step, state.max_steps)
            if line is not None:
                # One write of one whole line, flushed: the tailing server never reads half of it
                # (it also waits for the newline).
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(line) + "\n")

    return JsonLinesEvents()


def main(argv: list[str]) -> int:
    tune_yaml, events = argv
    import transformers.trainer

    from agentkit.cli.app import main as agentkit

    # Every Trainer (HF's in `agentkit tune`, TRL's DPOTrainer subclasses it) starts from this list,
    # so appending here reaches the trainer of any method without a hook in tuning/. It is a module
    # constant, not an API: fail loudly if transformers renames it, rather than train without events.
    callbacks = getattr(transformers.trainer, "DEFAULT_CALLBACKS", None)
    if not isinstance(callbacks, list):
        print("error: transformers.trainer.DEFAULT_CALLBACKS is gone, so the job cannot report its loss. "
              "Fix: install transformers<6 (pyproject's range).", file=sys.stderr)  # fmt: skip
        return 1
    callbacks.append(events_callback(Path(events)))
    return agentkit(["tune", tune_yaml, "--no-progress"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

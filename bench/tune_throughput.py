"""LoRA SFT throughput: agentkit's `Run.prepare(...).fit()` vs a plain transformers Trainer + peft
script written the standard way (pad to the longest row, no packing), measured in the same run.
Targets: >= 1.3x non-pad tokens/s, peak RSS equal or lower.

Same model (smollm2-135m-instruct, fp32), the same tokenised rows (agentkit's `encode_chat`, so
assistant-only labels for both), batch 8, max length 256, LoRA r=8 alpha=16 all-linear, lr 2e-4,
seed 0. Each variant runs in its own subprocess (this script with --variant), so its peak RSS
(`ru_maxrss`) is its own; the order alternates between repeats, since this box is shared.
Tokens/s counts non-pad tokens over steps 2..N (step 1 warms the allocator); the median over
repeats is reported, and the largest peak RSS.

Run: flock /tmp/agentkit-heavy.lock .venv/bin/python bench/tune_throughput.py [--steps 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path("/work/shared/data/sft_alpaca_demo/alpaca_en_demo.json")
BASE = "smollm2-135m-instruct"
VARIANTS = ("plain", "agentkit")


class StepClock:
    """Counts the rows each batch is made of (non-pad tokens) and times optimizer steps."""

    def __init__(self, collator: Any) -> None:
        self.collator, self.batch_tokens, self.step_ends = collator, [], []

    def __call__(self, batch: list[dict[str, Any]]) -> Any:
        self.batch_tokens.append(sum(len(row["input_ids"]) for row in batch))
        return self.collator(batch)

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class _OnStep(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                clock.step_ends.append(time.perf_counter())

        return _OnStep()

    def tokens_per_second(self) -> tuple[int, float]:
        # The dataloader may collate one batch ahead; batch k is still step k, in order.
        steps = len(self.step_ends)
        tokens = sum(self.batch_tokens[1:steps])
        return tokens, tokens / (self.step_ends[-1] - self.step_ends[0])


def encoded_rows(tokenizer: Any, rows: int, max_length: int) -> list[dict[str, Any]]:
    from agentkit.tuning.data import DataConfig, load_dataset
    from agentkit.tuning.trainer import _encode

    dataset = load_dataset(DataConfig(train=str(DATA), max_rows=rows, eval_fraction=0))
    return _encode(tokenizer, dataset.train, max_length)


def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    """What a user writes from the transformers + peft docs: pad to longest, no packing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from agentkit.registry import Registry

    path = Registry.default().path(BASE)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    rows = encoded_rows(tokenizer, args.rows, args.max_length)
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))  # fmt: skip
    clock = StepClock(DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100))
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=model, train_dataset=rows, data_collator=clock, callbacks=[clock.callback()],
            args=TrainingArguments(
                output_dir=out, max_steps=args.steps, learning_rate=2e-4, per_device_train_batch_size=args.batch,
                logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=True,
                dataloader_pin_memory=False,
            ),
        )  # fmt: skip
        trainer.train()
    return {"rows": len(rows), **measure(clock, trainer)}


def run_agentkit(args: argparse.Namespace) -> dict[str, Any]:
    from agentkit.registry import Registry
    from agentkit.tuning import TuneConfig
    from agentkit.tuning.trainer import Run

    registry = Registry.default()
    output = f"bench-throughput-{os.getpid()}"
    config = TuneConfig.model_validate({
        "base": BASE, "method": "lora", "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"},
        "data": {"train": str(DATA), "max_rows": args.rows, "eval_fraction": 0},
        "train": {"batch_size": args.batch, "max_length": args.max_length, "max_steps": args.steps,
                  "learning_rate": 2e-4, "seed": 0, **({"packing": False} if args.no_packing else {})},
        "output": output,
    })  # fmt: skip
    try:
        run = Run.prepare(config, registry)
        clock = StepClock(run.trainer.data_collator)
        run.trainer.data_collator = clock
        run.trainer.add_callback(clock.callback())
        run.fit()
        return {"rows": len(run.trainer.train_dataset), **measure(clock, run.trainer)}
    finally:
        shutil.rmtree(registry.root / "runs" / output, ignore_errors=True)  # checkpoints of this run only


def measure(clock: StepClock, trainer: Any) -> dict[str, Any]:
    tokens, tps = clock.tokens_per_second()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "steps": trainer.state.global_step,
        "timed_tokens": tokens,
        "tokens_per_s": round(tps, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),  # KiB on Linux
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
    }


def child(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    flags = [
        f"--rows={args.rows}",
        f"--steps={args.steps}",
        f"--batch={args.batch}",
        f"--max-length={args.max_length}",
    ]
    flags += ["--no-packing"] if args.no_packing else []
    command = [sys.executable, __file__, "--variant", variant, *flags]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{variant} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=256, help="alpaca rows to tokenise (batches draw from them)"
    )
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (first one untimed)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, order alternating")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--no-packing", action="store_true", help="agentkit with train.packing: false")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found (the Alpaca demo rows this benchmark trains on)")
        return
    if args.steps < 3:
        parser.error("--steps must be >= 3 (step 1 is untimed)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.variant:
        result = (run_plain if args.variant == "plain" else run_agentkit)(args)
        print(json.dumps(result))
        return

    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for repeat in range(args.repeats):
        for variant in VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]:
            result = child(variant, args)
            results[variant].append(result)
            print(f"  run {repeat + 1} {variant:8s} {json.dumps(result)}", flush=True)

    def summary(variant: str) -> tuple[float, float]:
        runs = results[variant]
        return statistics.median(r["tokens_per_s"] for r in runs), max(r["peak_rss_gib"] for r in runs)

    (plain_tps, plain_rss), (ak_tps, ak_rss) = summary("plain"), summary("agentkit")
    packing = "off" if args.no_packing else "default"
    print(f"LoRA SFT, {BASE}, {args.rows} alpaca rows, batch {args.batch}, max_length {args.max_length}, "
          f"{args.steps} steps x {args.repeats} runs (agentkit packing: {packing})")  # fmt: skip
    for name, tps, rss in (("plain Trainer+peft (pad to longest)", plain_tps, plain_rss),
                           ("agentkit Run.prepare/fit", ak_tps, ak_rss)):  # fmt: skip
        print(f"{name + ':':37s} {tps:8.1f} non-pad tokens/s, peak RSS {rss:.2f} GiB")
    print(f"agentkit/plain: tokens/s {ak_tps / plain_tps:.2f}x (target >= 1.3x), "
          f"peak RSS {ak_rss / plain_rss:.2f}x (target <= 1.0x)")  # fmt: skip


if __name__ == "__main__":
    main()

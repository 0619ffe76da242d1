"""DPO (TRL's DPOTrainer, LoRA on the built-in SmolLM2) preference accuracy on held-out pairs,
base vs trained, in one run, with the minutes it took.

Two accuracies per held-out pair (chance = 0.5):
  likelihood  log P(chosen | prompt) > log P(rejected | prompt), answer tokens summed -- what the
              model prefers on its own; measured for the base and for the trained model.
  implicit    the DPO implicit reward beta * (log pi - log pi_ref) ranks chosen above rejected; the
              base is its own reference, so its implicit rewards tie at 0 (counted as 0.5).

Data: --data (default ../shared/data/pref_dpo_demo/dpo_en_demo.json; HH-RLHF jsonl works too);
skipped with a message when absent. Pairs are shuffled with --seed; the first --eval-pairs are
held out and the next --train-pairs train; only pairs whose prompt fits in half of --max-length
are used (TRL drops longer ones from training). A registry under bench/out/dpo-home.

Run:  nice -n 15 .venv/bin/python bench/dpo_eval.py [--train-pairs N] [--epochs E]

Result, 2 CPU cores shared with 4 other jobs (24.0 min, 17.0 of them training):
  nice -n 15 .venv/bin/python bench/dpo_eval.py --train-pairs 48 --eval-pairs 24 --max-length 192 --lr 1e-4
    48 pref_dpo_demo pairs, 1 epoch = 12 steps, LoRA r=16, beta 0.1
    accuracy     base   trained  ratio
    likelihood   0.333  0.333    1.00   (the base prefers the shorter rejected answers by summed log-prob)
    implicit     0.500  0.583    1.17   (TRL's own eval rewards/accuracies: 0.625)
  24 held-out pairs give one standard error of ~0.10: a direction, not a measurement.
Larger run, 2 CPU cores shared with two PPO benches (35.5 min, 23.6 of them training):
  .venv/bin/python bench/dpo_eval.py --max-length 256 --eval-pairs 60 --train-pairs 60 --epochs 2 --lr 1e-4
    60 pairs, 2 epochs = 30 steps (only 120 of the 300 pairs have a prompt within 128 tokens)
    accuracy     base   trained  ratio
    likelihood   0.400  0.400    1.00
    implicit     0.500  0.583    1.17   (TRL's own eval rewards/accuracies: 0.600)
  One standard error at 60 pairs is ~0.064: the implicit-reward accuracy is 1.3 s.e. above chance,
  the same 0.583 as the 24-pair run; the model's own likelihood ranking does not move.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DATA = ROOT.parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "pref_dpo_demo" / "dpo_en_demo.json")
    parser.add_argument("--train-pairs", type=int, default=96)
    parser.add_argument("--eval-pairs", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from agentkit.registry import Registry
    from agentkit.registry.importer import copy_hf_folder
    from agentkit.tuning import TuneConfig
    from agentkit.tuning.dpo.trainer import DpoRun, completion_logps, implicit_accuracy
    from agentkit.tuning.preference import load_preferences

    if not args.data.is_file():
        print(f"skip: {args.data} not found (pass --data PATH to a preference file)")
        return 0
    started = time.perf_counter()
    pairs = load_preferences(args.data)
    random.Random(args.seed).shuffle(pairs)
    # TRL keeps the start of a sequence and drops pairs whose prompt alone fills max_length, so
    # only pairs whose prompt takes at most half the window train and are scored (same pairs for both).
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Registry.default().path("smollm2-135m-instruct"))
    pairs = [p for p in pairs if len(tokenizer.apply_chat_template(p.prompt, add_generation_prompt=True,
                                                                   tokenize=True, return_dict=True)["input_ids"])
             <= args.max_length // 2]  # fmt: skip
    held, train = pairs[: args.eval_pairs], pairs[args.eval_pairs : args.eval_pairs + args.train_pairs]
    OUT.mkdir(parents=True, exist_ok=True)
    train_file, eval_file = OUT / "dpo-train.jsonl", OUT / "dpo-eval.jsonl"
    for path, part in ((train_file, train), (eval_file, held)):
        path.write_text("\n".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
                                  for p in part))  # fmt: skip
    home_dir = OUT / "dpo-home"
    shutil.rmtree(home_dir, ignore_errors=True)
    home = Registry(home_dir)
    home.create_entry("smollm2-135m-instruct",
                      lambda s: copy_hf_folder(Registry.default().path("smollm2-135m-instruct"), s))  # fmt: skip
    config = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "dpo", "dpo": {"lora": {"r": 16, "alpha": 32}, "beta": args.beta},
        "data": {"train": str(train_file), "eval": str(eval_file)},
        "train": {"learning_rate": args.lr, "epochs": args.epochs, "batch_size": 4, "max_length": args.max_length,
                  "seed": args.seed, "logging_steps": 4},
        "output": "dpo-bench",
    })  # fmt: skip
    run = DpoRun.prepare(config, home)
    metrics = run.fit()
    t0 = time.perf_counter()
    trained = completion_logps(run.model, run.tokenizer, held, args.max_length)
    with run.model.disable_adapter():  # the reference = the base
        base = completion_logps(run.model, run.tokenizer, held, args.max_length)
    eval_s = time.perf_counter() - t0
    run.register()
    minutes = (time.perf_counter() - started) / 60

    def likelihood(logps: list[tuple[float, float]]) -> float:
        return sum(c > r for c, r in logps) / len(logps)

    result = {
        "base_likelihood": likelihood(base), "trained_likelihood": likelihood(trained),
        "base_implicit": 0.5, "trained_implicit": implicit_accuracy(trained, base),
        "trl_eval_rewards_accuracy": metrics.get("eval_rewards/accuracies"), "minutes": round(minutes, 2),
        "train_pairs": len(train), "eval_pairs": len(held), "steps": metrics["steps"],
    }  # fmt: skip
    print(f"DPO LoRA r=16, beta={args.beta}, lr={args.lr}, {args.epochs} epoch(s), {len(train)} train pairs, "
          f"{len(held)} held-out, max_length={args.max_length}, {metrics['steps']} steps")  # fmt: skip
    print(f"{'accuracy':<22}{'base':>7}{'trained':>9}{'ratio':>7}")
    for name in ("likelihood", "implicit"):
        b, a = result[f"base_{name}"], result[f"trained_{name}"]
        print(f"{name:<22}{b:>7.3f}{a:>9.3f}{a / b if b else float('nan'):>7.2f}")
    print(f"TRL's eval rewards/accuracies (ties count 0): {result['trl_eval_rewards_accuracy']}")
    print(
        f"minutes: {minutes:.1f} total, {metrics['train_seconds'] / 60:.1f} training, {eval_s / 60:.1f} scoring"
    )
    (OUT / "dpo_eval.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

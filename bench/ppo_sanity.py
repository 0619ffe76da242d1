"""PPO optimiser sanity check: can `agentkit.tuning`'s PPO climb a reward that is known to be
climbable? The reward model's score is replaced by minus the response length in tokens / 8, so a
working optimiser makes responses shorter within a few steps; the KL to the SFT model rises.

The run loads the reward model only to satisfy the stage's checks; it never scores with it.
Needs the registry of bench/ppo_eval.py (bench/out/ppo-home, with `bench-reward` and its prompt
file bench/out/ppo-home-data/prefs.jsonl); run that first. Nothing is registered.

Run:  OMP_NUM_THREADS=2 .venv/bin/python bench/ppo_sanity.py [--steps 12] [--lr 1e-3]

Result (2 CPU cores, nothing else running; 12 steps x 8 rollouts on hh_rlhf prompts, 3.5 min): mean
response length 23.5 tokens at step 1 -> 7.6 at step 12 (score -2.91 -> -0.83), KL to the SFT model
0 -> 7.9 nats. (An earlier run on pref_dpo_demo prompts went 21.0 -> 1.6 tokens.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=OUT / "ppo-home")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    prompts = args.home.with_name(args.home.name + "-data") / "prefs.jsonl"
    if not (args.home / "models" / "bench-reward").is_dir() or not prompts.is_file():
        print(f"skipped: no bench-reward in {args.home} (run bench/ppo_eval.py first)")
        return 0
    from agentkit.registry import Registry
    from agentkit.tuning import TuneConfig
    from agentkit.tuning.ppo.trainer import PPOTrainer

    config = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "ppo",
        "ppo": {"reward_model": "bench-reward", "sampling": {"max_new_tokens": 24}, "ppo_epochs": 2,
                "init_kl_coef": 0.05, "target_kl": 4.0, "kl_horizon": 400, "lora": {"r": 8, "alpha": 16}},
        "data": {"train": str(prompts), "eval_fraction": 0},
        "train": {"max_steps": args.steps, "learning_rate": args.lr, "batch_size": 8, "max_length": 128, "seed": 0},
        "output": "ppo-sanity",
    })  # fmt: skip
    trainer = PPOTrainer.prepare(config, Registry(args.home))

    class MinusLength:
        def score(self, prompts: list, texts: list[str]) -> list[float]:
            return [-len(trainer.tokenizer(t)["input_ids"]) / 8 for t in texts]

    trainer.reward = MinusLength()
    started = time.perf_counter()
    trainer.fit()
    for e in trainer.log:
        print(f"step {e['step']:>3}  score {e['score']:+.3f}  length {e['response_length']:5.1f}  "
              f"KL {e['kl']:6.2f}  clip {e['clip_fraction']:.3f}")  # fmt: skip
    first, last = trainer.log[0], trainer.log[-1]
    print(f"length {first['response_length']:.1f} -> {last['response_length']:.1f} tokens; "
          f"{(time.perf_counter() - started) / 60:.1f} min")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A deliberately bad candidate is not promoted: `agentkit improve`'s decision against a LoRA tuned a
few steps at a learning rate far too high, on the same round's data.

It reuses round 1 of a suite that `agentkit improve` already ran (its collected runs, SFT rows and
the champion's held-out evaluation: greedy decoding with the same seeds, so the champion's runs are
the ones it would repeat), tunes the bad candidate from the base, evaluates it on the same held-out
goals and lets the loop decide, through the same resume path a killed `improve` takes (the derived
suite starts at stage `tune`). Printed: held-out success of champion and bad candidate, the paired
gain and its standard error, and whether it was promoted (it must not be).

Run (after `agentkit improve examples/improve/suite.yaml`):
  OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/improve_bad_candidate.py [--suite examples/improve/suite.yaml] [--lr 0.05] [--steps 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    import yaml

    from agentkit.agents.improve import Improver, load_suite
    from agentkit.registry import Registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "examples" / "improve" / "suite.yaml")
    parser.add_argument("--lr", type=float, default=0.05, help="the bad learning rate (the suite's is ~1e-4)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="goal runs at a time (agentkit improve --workers)")
    args = parser.parse_args(argv)

    suite, _ = load_suite(args.suite)
    registry = Registry.default()
    source = registry.root / "improve" / suite.name / "round-1"
    source_state = json.loads((registry.root / "improve" / suite.name / "state.json").read_text())
    if not (source / "evaluate.jsonl").is_file() or source_state.get("round", 0) < 1:
        print(f"round 1 of {suite.name} has not been evaluated: run `agentkit improve {args.suite}` first")
        return 2
    name = f"{suite.name}-bad"
    data = yaml.safe_load(args.suite.read_text(encoding="utf-8"))
    data.update(name=name,
                train=[str((args.suite.parent / p).resolve()) for p in data["train"]],
                heldout=[str((args.suite.parent / p).resolve()) for p in data["heldout"]],
                indexes={k: str((args.suite.parent / v).resolve()) for k, v in data.get("indexes", {}).items()})  # fmt: skip
    data["tune"] = {**data.get("tune", {}), "start": "base",
                    "train": {**data.get("tune", {}).get("train", {}), "epochs": 1, "max_steps": args.steps,
                              "learning_rate": args.lr, "warmup_steps": 0}}  # fmt: skip
    data["promote"] = {**data.get("promote", {}), "alias": f"{name}-default"}
    folder = registry.root / "improve" / name
    if folder.exists():
        shutil.rmtree(folder)
    if f"{name}-r1" in registry:
        registry.remove(f"{name}-r1")
    (folder / "round-1").mkdir(parents=True)
    for file in ("collect.jsonl", "sft.jsonl", "dpo.jsonl"):
        shutil.copy(source / file, folder / "round-1" / file)
    champion_rows = [line for line in (source / "evaluate.jsonl").read_text().splitlines()
                     if json.loads(line)["who"] == "champion"]  # fmt: skip
    (folder / "round-1" / "evaluate.jsonl").write_text("".join(f"{r}\n" for r in champion_rows))
    first = json.loads((source / "decision.json").read_text()) if (source / "decision.json").is_file() else {}
    champion = first.get("champion") if first.get("champion") != suite.model.model else None
    state = {"round": 1, "stage": "tune", "champion": champion if champion is not None else suite.model.adapter,
             "collect": source_state.get("collect"), "data": source_state.get("data")}  # fmt: skip
    (folder / "state.json").write_text(json.dumps(state))
    with tempfile.TemporaryDirectory() as tmp:
        suite_file = Path(tmp) / "bad_suite.yaml"
        suite_file.write_text(yaml.safe_dump(data), encoding="utf-8")
        log = Improver(suite_file, say=lambda line: print(line, flush=True), workers=args.workers).run(1)
    row = log[-1]
    print(f"\nbad candidate {row['candidate']} (lr {args.lr}, {args.steps} steps): loss "
          f"{row.get('train_loss_first')} -> {row.get('train_loss_last')}")
    print(f"held-out success: champion {row['heldout_before']:.3f}, bad candidate {row['heldout_after']:.3f}, "
          f"paired gain {row['gain']:+.3f} +- {row['se']:.3f} (SE)")
    print(f"promoted: {row['promoted']} ({row['reason']})")
    return 1 if row["promoted"] else 0


if __name__ == "__main__":
    sys.exit(main())

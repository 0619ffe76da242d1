"""Agent success rate on the goals of bench/agent_goals/: the built-in model vs the same base + an adapter.

The goals are split in three folders, bench/agent_goals/train/, heldout/ and confirm/ (see its README):
the default --split heldout measures only goals that are never trained on nor used to choose settings;
--split confirm runs the goals written after `agentkit improve` had run, once, to confirm a promoted
adapter (only when named: --split all is train and heldout); --split train for the others.

Every goal has automatic checks (files the agent must write, with the right content). Each goal runs
in a fresh copy of its seed workspace, once per model, with the budgets its goal file sets (the same
for both); success is the goal's checks passing after the run, re-checked here. Printed: success rate,
mean steps and tokens per success for each model, and the adapter's difference in points.

Also the baseline of one model alone (no --adapter) on one engine and strategy, with the median
seconds per agent step (each step's wall time from the run's trace):
  OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/agent_eval.py --model qwen2.5-coder-0.5b-instruct --engine llamacpp --strategy free

Run: .venv/bin/python bench/agent_eval.py --adapter smollm2-agent-lora [--split heldout|train|all|confirm] [--limit 8]
     [--goals calc_add,write_hello]
The index goals need the index agent-goals-facts (bench/agent_goals/README.md says how to build it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GOALS = Path(__file__).resolve().parent / "agent_goals"
SPLITS = ("train", "heldout", "confirm")  # subfolders of GOALS
ALL = ("train", "heldout")  # --split all: confirm/ runs only when named, so it is not spent by accident


@dataclass
class Outcome:
    goal: str
    passed: bool
    status: str
    steps: int
    tokens: int
    seconds: float
    answer: str
    step_seconds: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)  # input tokens of each step's model call


def goal_files(folder: Path, names: list[str] | None, limit: int | None,
               split: str = "heldout") -> list[Path]:
    """The goal files of `split` (folder/<split>/*.yaml; "all": train and heldout), or the ones
    `names` names, looked up in every split."""
    if split not in (*SPLITS, "all"):
        raise SystemExit(f"unknown split {split!r}; use one of {', '.join(SPLITS)}, all")
    chosen = SPLITS if names else ALL if split == "all" else (split,)
    files = sorted((f for s in chosen for f in (folder / s).glob("*.yaml")), key=lambda f: f.stem)
    if not files:
        raise SystemExit(f"no goal files in {', '.join(str(folder / s) for s in chosen)}; "
                         f"--goals-dir is the folder that holds {', '.join(s + '/' for s in SPLITS)}")
    if names:
        known = {f.stem: f for f in files}
        missing = [n for n in names if n not in known]
        if missing:
            raise SystemExit(f"unknown goal(s) {missing}; the goals are: {', '.join(known)}")
        files = [known[n] for n in names]
    return files[:limit]


def missing_indexes(goals: list[Path]) -> list[str]:
    """Indexes the goals name (`indexes:`) that the default registry lacks: their goals could only fail."""
    import yaml

    from agentkit.indexes.index import indexes_dir
    from agentkit.indexes.spec import SPEC_FILE
    from agentkit.registry import Registry

    root = indexes_dir(Registry.default())
    named = {n for g in goals for n in yaml.safe_load(g.read_text(encoding="utf-8")).get("indexes") or []}
    return sorted(n for n in named if not (root / n / SPEC_FILE).is_file())


def stage(goal: Path, into: Path, model: str, adapter: str | None, max_tokens: int | None,
          budgets: dict[str, Any], engine: str = "auto", strategy: str | None = None) -> Path:
    """A copy of the goal file in `into`, with its seed workspace (relative to the goal file's folder,
    train/, heldout/ or confirm/), the model under test and any budget overrides (the same for every model)."""
    import yaml

    spec = yaml.safe_load(goal.read_text(encoding="utf-8"))
    seed = goal.parent / spec.get("workspace", "workspace")
    workspace = into / "workspace"
    if seed.is_dir():
        shutil.copytree(seed, workspace)
    else:
        workspace.mkdir(parents=True)
    spec["workspace"] = "workspace"
    spec["budgets"] = {**spec.get("budgets", {}), **budgets}
    spec["model"] = {"model": model, "adapter": adapter, "engine": engine,
                     **({"max_tokens": max_tokens} if max_tokens else {})}  # fmt: skip
    if strategy:
        spec["strategy"] = strategy
    staged = into / goal.name
    staged.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return staged


def run_goal(goal: Path, model: str, adapter: str | None, max_tokens: int | None, budgets: dict[str, Any],
             engine: str = "auto", strategy: str | None = None, keep: Path | None = None) -> Outcome:  # fmt: skip
    from agentkit.agents import Agent
    from agentkit.agents.checks import run_check
    from agentkit.agents.spec import load_goal

    with tempfile.TemporaryDirectory(prefix=f"agent-eval-{goal.stem}-") as tmp:
        staged = stage(goal, Path(tmp), model, adapter, max_tokens, budgets, engine, strategy)
        spec, workspace = load_goal(staged)
        started = time.perf_counter()
        try:
            runs = keep / (adapter or model) / goal.stem if keep else Path(tmp) / "runs"
            result = Agent.from_yaml(staged, runs_dir=runs).run()
        except Exception as exc:  # noqa: BLE001 -- one broken run must not end the whole eval
            return Outcome(goal.stem, False, f"error: {type(exc).__name__}: {exc}", 0, 0,
                           time.perf_counter() - started, "")
        passed = bool(spec.checks) and all(run_check(c, workspace).passed for c in spec.checks)
        records = [r for trace in runs.glob("*/trace.jsonl")
                   for r in map(json.loads, trace.read_text(encoding="utf-8").splitlines()) if r.get("type") == "step"]  # fmt: skip
        return Outcome(goal.stem, passed, str(getattr(result.status, "value", result.status)), result.steps,
                       int(result.tokens or 0), float(result.seconds or time.perf_counter() - started),
                       str(result.final_answer or "")[:80], [float(r["seconds"]) for r in records],
                       [int(r["tokens"]["input"]) for r in records])  # fmt: skip


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    wins = [o for o in outcomes if o.passed]
    return {
        "goals": len(outcomes),
        "successes": len(wins),
        "success_rate": len(wins) / len(outcomes) if outcomes else 0.0,
        "mean_steps_per_success": sum(o.steps for o in wins) / len(wins) if wins else None,
        "mean_tokens_per_success": sum(o.tokens for o in wins) / len(wins) if wins else None,
        "minutes": sum(o.seconds for o in outcomes) / 60,
        "median_step_seconds": statistics.median(steps) if (steps := [s for o in outcomes for s in o.step_seconds]) else None,
        "median_step_prompt_tokens": statistics.median(p) if (p := [t for o in outcomes for t in o.prompt_tokens]) else None,
        "max_step_prompt_tokens": max(p) if p else None,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals-dir", type=Path, default=GOALS)
    parser.add_argument("--split", default="heldout", choices=[*SPLITS, "all"],
                        help="which goals: GOALS_DIR/<split>/*.yaml (default heldout: never trained on; all: train and heldout)")
    parser.add_argument("--goals", default=None,
                        help="comma-separated goal names, looked up in every split (default: --split)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N goals (bounds minutes)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "llamacpp"])
    parser.add_argument("--strategy", default=None, choices=["auto", "plan", "guided", "free"],
                        help="override every goal's strategy (the goals set none: the loop's default)")
    parser.add_argument("--adapter", default=None, help="adapter of --model to compare with the base")
    parser.add_argument("--base-json", type=Path, default=None,
                        help="take the base outcomes from an earlier --json of the same goals instead of rerunning "
                        "them (decoding is greedy, so they repeat); the report says so")
    parser.add_argument("--skip-base", action="store_true",
                        help="run only the adapter (to run base and adapter as two processes; compare their --json)")
    parser.add_argument("--max-tokens", type=int, default=None, help="max new tokens per model call, both runs")
    parser.add_argument("--max-steps", type=int, default=None, help="override every goal's max_steps (both models)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="override every goal's max_seconds (both models); a busy machine makes steps slow")
    parser.add_argument("--keep-runs", type=Path, default=None,
                        help="keep each run's trace in DIR/<model or adapter>/<goal>/ (see `agentkit runs show`)")
    parser.add_argument("--json", type=Path, default=None, help="write every outcome and the summaries here")
    args = parser.parse_args(argv)

    goals = goal_files(args.goals_dir, args.goals.split(",") if args.goals else None, args.limit, args.split)
    if missing := missing_indexes(goals):
        # The goals' documents are GOALS_DIR/index_docs (see its README).
        raise SystemExit(f"no index {', '.join(missing)} in the registry; build it first: "
                         + "; ".join(f"agentkit index add {n} {args.goals_dir / 'index_docs'}" for n in missing))
    from agentkit.registry import Registry

    Registry.default().ensure(args.model)
    budgets = {k: v for k, v in (("max_steps", args.max_steps), ("max_seconds", args.max_seconds)) if v}
    report: dict[str, Any] = {"split": "by name" if args.goals else args.split, "budget_overrides": budgets}
    if args.base_json:
        earlier = json.loads(args.base_json.read_text(encoding="utf-8"))["base"]
        chosen = {g.stem for g in goals}
        outcomes = [Outcome(**o) for o in earlier["outcomes"] if o["goal"] in chosen]
        if {o.goal for o in outcomes} != chosen:
            raise SystemExit(f"{args.base_json} lacks base outcomes for {sorted(chosen - {o.goal for o in outcomes})}")
        report["base"] = {"summary": summary(outcomes), "outcomes": [asdict(o) for o in outcomes],
                          "from": str(args.base_json)}
        print(f"base: from {args.base_json} (an earlier run of these goals)")
    runs = ([] if args.base_json or args.skip_base else [("base", None)]) + ([("adapter", args.adapter)] if args.adapter else [])
    if not runs:
        raise SystemExit("nothing to run: pass --adapter, or drop --base-json")
    for label, adapter in runs:
        print(f"{label}: {args.model}{' + ' + adapter if adapter else ''}, engine {args.engine}, "
              f"strategy {args.strategy or 'as each goal says'}, {len(goals)} goals ({report['split']})",
              flush=True)
        outcomes = []
        for goal in goals:
            outcome = run_goal(goal, args.model, adapter, args.max_tokens, budgets, args.engine, args.strategy,
                               args.keep_runs)
            outcomes.append(outcome)
            print(f"  {outcome.goal:18s} {'PASS' if outcome.passed else 'fail'}  {outcome.status:18s} "
                  f"steps {outcome.steps:2d}  tokens {outcome.tokens:5d}  {outcome.seconds:5.0f} s  "
                  f"{outcome.answer!r}", flush=True)
        report[label] = {"summary": summary(outcomes), "outcomes": [asdict(o) for o in outcomes]}
    for label in ("base", "adapter"):
        if label not in report:
            continue
        s = report[label]["summary"]
        print(f"{label:8s} success {s['successes']}/{s['goals']} = {100 * s['success_rate']:.0f}%  "
              f"steps/success {_fmt(s['mean_steps_per_success'], '.1f')}  "
              f"tokens/success {_fmt(s['mean_tokens_per_success'], '.0f')}  "
              f"median step {_fmt(s['median_step_seconds'], '.2f')} s  {s['minutes']:.1f} min", flush=True)
    if "base" in report and "adapter" in report:
        base, tuned = report["base"]["summary"], report["adapter"]["summary"]
        points = 100 * (tuned["success_rate"] - base["success_rate"])
        print(f"adapter - base: {points:+.0f} points (target >= +15)")
        report["points"] = points
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

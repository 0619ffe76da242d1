"""A second look at `agentkit improve`'s champion, on goals written after the loop had run: the
suite's starting model and its champion on a new goal set, paired per goal, then pooled with the
held-out goals the loop decided on.

The held-out goals chose the champion: the loop promoted the first candidate that beat its champion
there, so its held-out lift is the figure of a winner. The goals of bench/agent_goals/confirm/ were
written afterwards, one parallel form of each held-out goal (same category and shape, new wording,
files and values), by someone who saw no model's results; nothing was trained or chosen on them.
Both models run on them exactly as the loop's evaluate stage runs the held-out goals (the same
`run_goal`, greedy, the suite's engine and strategy, `--workers` runs at a time, interleaved), and
each run is recorded as it ends in OUT/confirm.jsonl, so a killed run resumes where it stopped.

Printed: each model's success, steps and tokens per success and median seconds per step; the
champion's paired gain over the starting model on the new goals alone (the confirmation), and pooled
with the held-out runs already in the improve folder (the starting model's round-1 runs and the
champion's runs in the round that promoted it: greedy runs repeat exactly, bench/improve_lift.py).

Run (after `agentkit improve examples/improve/suite.yaml`, with the same AGENTKIT_HOME):
  OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/improve_confirm.py [--suite examples/improve/suite.yaml]
      [--goals bench/agent_goals/confirm] [--adapter ID (default: the champion)] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from improve_lift import _by_goal, _figures, _rows

ROOT = Path(__file__).resolve().parents[1]


def _pair(
    start: dict[str, dict[str, Any]], final: dict[str, dict[str, Any]], names: list[str]
) -> dict[str, Any]:
    from agentkit.agents.improve_suite import paired_gain

    stats = paired_gain([float(start[g]["ok"]) for g in names], [float(final[g]["ok"]) for g in names])
    return {**stats, "won": [g for g in names if final[g]["ok"] and not start[g]["ok"]],
            "lost": [g for g in names if start[g]["ok"] and not final[g]["ok"]]}  # fmt: skip


def _line(label: str, lift: dict[str, Any]) -> str:
    ratio = f"{lift['gain'] / lift['se']:.2f} SE" if lift["se"] else "no spread"
    return (f"{label}: {lift['champion_rate']:.0%} -> {lift['candidate_rate']:.0%} on {lift['goals']} goals, gain "
            f"{100 * lift['gain']:+.1f} points +- {100 * lift['se']:.1f} (SE) = {ratio}; won {len(lift['won'])} "
            f"({', '.join(lift['won']) or '-'}), lost {len(lift['lost'])} ({', '.join(lift['lost']) or '-'})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from agent_eval import missing_indexes

    from agentkit.agents.improve import _append_line
    from agentkit.agents.improve_runs import run_goals
    from agentkit.agents.improve_suite import load_suite
    from agentkit.registry import Registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "examples" / "improve" / "suite.yaml")
    parser.add_argument(
        "--goals",
        type=Path,
        default=ROOT / "bench" / "agent_goals" / "confirm",
        help="the folder of new goal files (*.yaml)",
    )
    parser.add_argument(
        "--adapter", default=None, help="the adapter to confirm (default: the suite's champion)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="goal runs at a time, as `agentkit improve --workers`"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the runs go (default: $AGENTKIT_HOME/improve/<suite>/confirm-<goals folder>)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)

    suite, goals = load_suite(args.suite)
    registry = Registry.default()
    folder = registry.root / "improve" / suite.name
    log = _rows(folder / "log.jsonl") if (folder / "log.jsonl").is_file() else []
    if not log:
        print(
            f"no round of {suite.name} is decided yet ({folder}): run `agentkit improve {args.suite}` first"
        )
        return 2
    adapter = args.adapter or registry.aliases().get(suite.promote.alias, {}).get("target")
    if not adapter or adapter == suite.model.model:
        print(f"{suite.name} has no promoted adapter behind {suite.promote.alias!r} yet: pass --adapter ID")
        return 2
    files = sorted(args.goals.glob("*.yaml"))
    if not files:
        print(f"no goal files in {args.goals}")
        return 2
    if overlap := sorted({f.stem for f in files} & {g.stem for g in goals.train + goals.heldout}):
        print(f"{args.goals}: goals {', '.join(overlap)} are also the suite's train or held-out goals")
        return 2
    if missing := missing_indexes(files):
        print(
            f"no index {', '.join(missing)} in {registry.root}: run `agentkit improve {args.suite}` first (it builds them)"
        )
        return 2

    out = args.out or folder / f"confirm-{args.goals.name}"
    out.mkdir(parents=True, exist_ok=True)
    record_file = out / "confirm.jsonl"
    models = {
        "start": suite.model.adapter or suite.model.model,
        "champion": adapter,
    }  # what each side is called
    base = {
        "start": suite.model.adapter,
        "champion": adapter,
    }  # the adapter each side runs on the suite's model
    done = {(r["who"], r["goal_file"]) for r in _rows(record_file)} if record_file.is_file() else set()
    jobs = [({"who": who, "goal_file": str(goal), "attempt": 0},
             {"goal_file": goal, "into": out / who / goal.stem, "model": suite.model.model, "adapter": base[who],
              "engine": suite.model.engine, "strategy": suite.strategy, "temperature": suite.evaluate.temperature,
              "seed": suite.evaluate.seed, "home": registry.root})
            for goal in files for who in models if (who, str(goal)) not in done]  # fmt: skip
    print(
        f"{suite.name}: {models['start']} vs {adapter} on {len(files)} goals of {args.goals} "
        f"({len(jobs)} runs to go, {args.workers} at a time); runs in {out}",
        flush=True,
    )

    def record(key: dict[str, Any], row: dict[str, Any]) -> None:
        _append_line(record_file, {**key, **row})
        print(
            f"  {key['who']:8s} {row['goal']:18s} {row['status']} ({row['steps']} steps, {row['seconds']}s)",
            flush=True,
        )

    run_goals(jobs, args.workers, record)

    rows = _rows(record_file)
    names = [f.stem for f in files]
    new = {who: _by_goal(rows, who) for who in models}
    confirm = _pair(new["start"], new["champion"], names)
    figures = {who: {"model": models[who], **_figures([new[who][g] for g in names])} for who in models}
    print(f"\non the {len(names)} new goals of {args.goals}:")
    for f in figures.values():
        print(f"  {f['model']:<28} success {f['success']:>6} ({f['rate']:.0%}), {f['steps_per_success']} steps and "
              f"{f['tokens_per_success']} tokens per success, median {f['median_s_per_step']} s per step")  # fmt: skip
    print(_line(f"confirm: {adapter} over {models['start']}", confirm))

    result: dict[str, Any] = {
        "adapter": adapter,
        "goals": str(args.goals),
        "figures": figures,
        "confirm": confirm,
    }
    promoted = next((row for row in log if row["candidate"] == adapter), None)
    if promoted and log[0]["champion"] == models["start"]:
        held = [g.stem for g in goals.heldout]
        start = _by_goal(_rows(folder / f"round-{log[0]['round']}" / "evaluate.jsonl"), "champion")
        final = _by_goal(_rows(folder / f"round-{promoted['round']}" / "evaluate.jsonl"), "candidate")
        if all(g in start and g in final for g in held):
            heldout = _pair(start, final, held)
            pooled = _pair({**start, **new["start"]}, {**final, **new["champion"]}, held + names)
            print(_line(f"held-out (chose it, round {promoted['round']})", heldout))
            print(_line("pooled, held-out + new", pooled))
            result |= {"heldout": heldout, "pooled": pooled}
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

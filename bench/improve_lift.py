"""What `agentkit improve` bought over its rounds: the held-out lift of the suite's champion over the
model it started from, paired per goal.

Each round's evaluate stage runs its champion and its candidate on the held-out goals (greedy, the
same seeds), and decides on that pair alone. After several rounds, the figure a user wants is the last
champion against the starting model: round 1's champion runs are the starting model's, and each
round's candidate ran on the same goals and seeds. This reads them from
`$AGENTKIT_HOME/improve/<suite>/` (nothing is run) and prints, for each round, the loop's own
decision, then each candidate's lift over the starting model (paired gain, its standard error, goals
won and lost) with success rate, steps and tokens per success and median seconds per step.

It also prints how well a model's greedy runs repeat across rounds: round k's champion ran in round
k-1 as well (its champion, or its promoted candidate), on the same goals and seeds.

Run (after `agentkit improve examples/improve/suite.yaml --rounds N`):
  .venv/bin/python bench/improve_lift.py [--suite examples/improve/suite.yaml] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def read_rows(path: Path) -> list[dict[str, Any]]:
    from agentkit.agents.improve import _read_lines  # the loop's reader: a line cut by a kill is skipped

    return _read_lines(path)


def by_goal(rows: list[dict[str, Any]], who: str) -> dict[str, dict[str, Any]]:
    """Goal -> a run of `who` with `ok` as the loop scores it: the success rate over its attempts."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["who"] == who:
            runs.setdefault(Path(r["goal_file"]).stem, []).append(r)
    return {goal: {**min(rs, key=lambda r: r["attempt"]), "ok": sum(r["ok"] for r in rs) / len(rs),
                   "runs": rs} for goal, rs in runs.items()}  # fmt: skip


def run_figures(goals: list[dict[str, Any]]) -> dict[str, Any]:
    """Success, steps and tokens per success and median seconds per step over `by_goal` values."""
    runs = [r for goal in goals for r in goal["runs"]]
    wins = [r for r in runs if r["ok"]]
    per_step = [r["seconds"] / r["steps"] for r in runs if r["steps"]]
    return {"success": f"{len(wins)}/{len(runs)}", "rate": len(wins) / len(runs) if runs else 0.0,
            "steps_per_success": round(statistics.mean(r["steps"] for r in wins), 2) if wins else None,
            "tokens_per_success": round(statistics.mean(r["tokens"] for r in wins)) if wins else None,
            "median_s_per_step": round(statistics.median(per_step), 1) if per_step else None}  # fmt: skip


def pair(start: dict[str, dict[str, Any]], final: dict[str, dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """`final`'s paired gain over `start` on the goals `names` (both `by_goal`), with the goals won and lost."""
    from agentkit.agents.improve_suite import paired_gain

    stats = paired_gain([float(start[g]["ok"]) for g in names], [float(final[g]["ok"]) for g in names])
    return {**stats, "won": [g for g in names if final[g]["ok"] and not start[g]["ok"]],
            "lost": [g for g in names if start[g]["ok"] and not final[g]["ok"]]}  # fmt: skip


def model_line(model: str, f: dict[str, Any]) -> str:
    return (f"  {model:<28} success {f['success']:>6} ({f['rate']:.0%}), {f['steps_per_success']} steps and "
            f"{f['tokens_per_success']} tokens per success, median {f['median_s_per_step']} s per step")  # fmt: skip


def gain_text(lift: dict[str, Any]) -> str:
    ratio = f"{lift['gain'] / lift['se']:.2f} SE" if lift["se"] else "no spread"
    return (f"gain {100 * lift['gain']:+.1f} points +- {100 * lift['se']:.1f} (SE) = {ratio}; won {len(lift['won'])} "
            f"({', '.join(lift['won']) or '-'}), lost {len(lift['lost'])} ({', '.join(lift['lost']) or '-'})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from agentkit.agents.improve_suite import load_suite
    from agentkit.registry import Registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "examples" / "improve" / "suite.yaml")
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)

    suite, goals = load_suite(args.suite)
    folder = Registry.default().root / "improve" / suite.name
    log = read_rows(folder / "log.jsonl") if (folder / "log.jsonl").is_file() else []
    if not log:
        print(f"no round of {suite.name} is decided yet ({folder}): run `agentkit improve {args.suite}` first")
        return 2
    names = [g.stem for g in goals.heldout]
    evaluations = {row["round"]: read_rows(folder / f"round-{row['round']}" / "evaluate.jsonl") for row in log}
    print(f"suite {suite.name}: {len(names)} held-out goals, started from {log[0]['champion']}")
    print("round  champion -> candidate              held-out before -> after   gain +- SE       promoted")
    for row in log:
        print(f"{row['round']:>5}  {row['champion']} -> {row['candidate']:<14} {row['heldout_before']:.2f} -> "
              f"{row['heldout_after']:.2f}{'':13} {row['gain']:+.3f} +- {row['se']:.3f}  {row['promoted']}")  # fmt: skip

    repeat = []
    for before, row in itertools.pairwise(log):  # round k's champion ran in round k-1 too, as one side or the other
        who = "candidate" if before["promoted"] else "champion"
        if before[who] == row["champion"]:
            then = by_goal(evaluations[before["round"]], who)
            now = by_goal(evaluations[row["round"]], "champion")
            same = [g for g in names if g in then and g in now and then[g]["ok"] == now[g]["ok"]]  # attempt 0
            same_tokens = [g for g in names if g in then and g in now and then[g]["tokens"] == now[g]["tokens"]]
            repeat.append({"model": row["champion"], "rounds": [before["round"], row["round"]],
                           "same_outcome": len(same), "same_tokens": len(same_tokens), "goals": len(names)})  # fmt: skip
            print(f"repeat: {row['champion']} in rounds {before['round']} and {row['round']}: same outcome on "
                  f"{len(same)}/{len(names)} goals, same token count on {len(same_tokens)}/{len(names)}")

    start = by_goal(evaluations[log[0]["round"]], "champion")
    lifts = []
    for row in log:  # every round's candidate ran on the same goals and seeds as the starting model
        final = by_goal(evaluations[row["round"]], "candidate")
        missing = [g for g in names if g not in start or g not in final]
        if missing:
            print(f"round {row['round']}: held-out goals without a run on both sides: {', '.join(missing)}")
            return 2
        lifts.append({"round": row["round"], "candidate": row["candidate"], "promoted": row["promoted"],
                      **pair(start, final, names), "figures": run_figures(list(final.values()))})  # fmt: skip
    figures = {"model": log[0]["champion"], **run_figures(list(start.values()))}
    print(f"\nover {log[0]['champion']} (round {log[0]['round']}'s champion runs), paired on {len(names)} held-out goals:")
    print(model_line(figures["model"], figures))
    for lift in lifts:
        print(f"{model_line(lift['candidate'], lift['figures'])}; {gain_text(lift)}{'; promoted' if lift['promoted'] else ''}")
    champion = next((lift["candidate"] for lift in reversed(lifts) if lift["promoted"]), log[0]["champion"])
    print(f"the suite's champion now: {champion}")
    if args.json:
        print(json.dumps({"rounds": log, "repeat": repeat, "start": figures, "lifts": lifts, "champion": champion},
                         indent=1, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A second look at `agentkit improve`'s champion, on goals written after the loop had run: the
model the suite started from and its champion on a new goal set, paired per goal, then pooled with
the held-out goals the loop decided on.

The held-out goals chose the champion: the loop promoted the first candidate that beat its champion
there, so its held-out lift is the figure of a winner. The goals of bench/agent_goals/confirm/ were
written afterwards, one parallel form of each held-out goal (same category and shape, new wording,
files and values), by a helper session told not to look at any model's results; nothing was trained
or chosen on them. Both models run on them exactly as the loop's evaluate stage runs the held-out
goals (`Improver._run_args`: the suite's engine, strategy, registry and evaluate temperature, seeds
and attempts; `--workers` runs at a time, interleaved). Each run is recorded as it ends in
OUT/confirm.jsonl with the adapter it ran, so a killed call resumes at the runs not recorded, and a
second adapter reuses only the starting model's runs.

Printed: each model's success, steps and tokens per success and median seconds per step; the
champion's paired gain over the starting model on the new goals alone (the confirmation), and pooled
with the held-out runs already in the improve folder (the starting model's round-1 runs and the
adapter's runs in the round it was the candidate: greedy runs repeat exactly, bench/improve_lift.py).
Refused (exit 2, one line): goals that are also the suite's (by name or sentence), an adapter of
another base, and a suite with nothing promoted yet and no --adapter.

Run (after `agentkit improve examples/improve/suite.yaml`, with the same AGENTKIT_HOME):
  OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/improve_confirm.py [--suite examples/improve/suite.yaml]
      [--goals bench/agent_goals/confirm] [--adapter ID or alias (default: the champion)] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from improve_lift import by_goal, gain_text, model_line, pair, read_rows, run_figures

ROOT = Path(__file__).resolve().parents[1]


def _line(label: str, lift: dict[str, Any]) -> str:
    return f"{label}: {lift['champion_rate']:.0%} -> {lift['candidate_rate']:.0%} on {lift['goals']} goals, {gain_text(lift)}"


def _heldout(folder: Path, log: list[dict[str, Any]], adapter: str, names: list[str]) -> tuple[Any, ...] | str:
    """(label, the starting model's held-out runs, the adapter's) from the improve folder, or why not."""
    row = next((r for r in log if r["candidate"] == adapter), None)
    if row is None:
        return f"{adapter} was no round's candidate, so it has no held-out runs in {folder}"
    start = by_goal(read_rows(folder / f"round-{log[0]['round']}" / "evaluate.jsonl"), "champion")
    final = by_goal(read_rows(folder / f"round-{row['round']}" / "evaluate.jsonl"), "candidate")
    if missing := [g for g in names if g not in start or g not in final]:
        return f"held-out goals without a run on both sides: {', '.join(missing)}"
    chose = "promoted: these goals chose it" if row["promoted"] else "not promoted"
    label = f"round {row['round']}'s candidate, {chose}"
    return label, start, final


def main(argv: list[str] | None = None) -> int:
    from agent_eval import missing_indexes

    from agentkit.agents.improve import Improver, _append_line
    from agentkit.agents.improve_runs import run_goals
    from agentkit.agents.improve_suite import goal_keys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "examples" / "improve" / "suite.yaml")
    parser.add_argument("--goals", type=Path, default=ROOT / "bench" / "agent_goals" / "confirm",
                        help="the folder of new goal files (*.yaml)")
    parser.add_argument("--adapter", default=None, help="the adapter to confirm (default: the suite's champion)")
    parser.add_argument("--workers", type=int, default=1, help="goal runs at a time, as `agentkit improve --workers`")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the runs go (default: $AGENTKIT_HOME/improve/<suite>/confirm-<goals folder>)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)  # fmt: skip

    improver = Improver(args.suite)  # the loop's own suite, registry and run arguments
    suite, goals, registry, folder = improver.suite, improver.goals, improver.registry, improver.folder
    log = read_rows(folder / "log.jsonl") if (folder / "log.jsonl").is_file() else []
    if not log:
        print(f"no round of {suite.name} is decided yet ({folder}): run `agentkit improve {args.suite}` first")
        return 2
    first = log[0]["champion"]  # what round 1 started from: the base model, or an adapter of it
    try:  # --adapter may be an alias, as a goal's `model:` may; the registry's own message names the fix
        champion = registry.resolve(args.adapter) if args.adapter else improver.champion()
        base = registry.card(champion).base if champion not in (None, suite.model.model) else suite.model.model
    except Exception as exc:  # noqa: BLE001 -- an unknown id or a malformed name
        print(exc)
        return 2
    if base != suite.model.model:
        print(f"--adapter {champion} is an adapter of {base}, not of {suite.model.model}")
        return 2
    sides = {"start": None if first == suite.model.model else first,
             "champion": None if champion == suite.model.model else champion}  # the adapter each side runs
    names = {"start": first, "champion": sides["champion"] or suite.model.model}
    if sides["champion"] == sides["start"]:
        print(f"nothing to confirm: {names['champion']} is what {suite.name} started from (no promotion yet); "
              "pass --adapter ID")
        return 2
    goal_dir = args.goals.resolve()
    files = sorted(goal_dir.glob("*.yaml"))
    if not files:
        print(f"no goal files in {goal_dir}")
        return 2
    seen = {key for g in goals.train + goals.heldout for key in goal_keys(g)}  # the suite's own overlap rule
    if overlap := [f.stem for f in files if goal_keys(f) & seen]:
        print(f"{goal_dir}: goals {', '.join(overlap)} are also the suite's train or held-out goals (name or sentence)")
        return 2
    if missing := missing_indexes(files):
        print(f"no index {', '.join(missing)} in {registry.root}: run `agentkit improve {args.suite}` first "
              "(it builds them)")  # fmt: skip
        return 2

    out = args.out or folder / f"confirm-{goal_dir.name}"
    out.mkdir(parents=True, exist_ok=True)
    record_file = out / "confirm.jsonl"
    recorded = read_rows(record_file) if record_file.is_file() else []
    done = {(r["who"], r["goal_file"], r["attempt"]) for r in recorded if r["adapter"] == sides[r["who"]]}
    jobs = [({**key, "adapter": sides[key["who"]]}, kwargs)  # the loop's evaluate stage, on the new goals
            for key, kwargs in improver.evaluation_jobs(files, sides, {who: out / names[who] for who in sides}, done)]
    print(f"{suite.name}: {names['start']} vs {names['champion']} on {len(files)} goals of {goal_dir} "
          f"({len(jobs)} runs to go, {args.workers} at a time); runs in {out}", flush=True)  # fmt: skip

    def record(key: dict[str, Any], row: dict[str, Any]) -> None:
        _append_line(record_file, {**key, **row})
        line = f"  {key['who']:8s} {row['goal']:18s} {row['status']} ({row['steps']} steps, {row['seconds']}s)"
        print(line, flush=True)

    run_goals(jobs, args.workers, record)

    rows = [r for r in read_rows(record_file) if r["adapter"] == sides[r["who"]]]  # runs of these two models only
    stems = [f.stem for f in files]
    new = {who: by_goal(rows, who) for who in sides}
    confirm = pair(new["start"], new["champion"], stems)
    figures = {who: {"model": names[who], **run_figures([new[who][g] for g in stems])} for who in sides}
    print(f"\non the {len(stems)} new goals of {goal_dir}:")
    for f in figures.values():
        print(model_line(f["model"], f))
    print(_line(f"confirm: {names['champion']} over {names['start']}", confirm))
    result: dict[str, Any] = {"start": names["start"], "adapter": names["champion"], "goals": str(goal_dir),
                              "figures": figures, "confirm": confirm}  # fmt: skip

    held = [g.stem for g in goals.heldout]
    found = _heldout(folder, log, names["champion"], held)
    if isinstance(found, str):
        print(f"not pooled with the held-out goals: {found}")
    else:
        label, start, final = found
        heldout = pair(start, final, held)
        pooled = pair({**start, **new["start"]}, {**final, **new["champion"]}, held + stems)
        print(_line(f"held-out ({label})", heldout))
        print(_line("pooled, held-out + new", pooled))
        result |= {"heldout": heldout, "pooled": pooled, "heldout_label": label}
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

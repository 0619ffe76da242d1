"""Agent traces for training: run the real agent loop on the training goals in goals/ with a scripted
teacher (A2's `ScriptedChatModel` playing the calls in goals/teacher_script.json), keep the runs whose
checks pass, and export them with `agentkit runs export --format sft` (one row per step: the exact
messages the agent showed the model, its call, and the bound tools).

Run (from the project root): .venv/bin/python examples/agent_lora/make_traces.py
Writes the runs under examples/agent_lora/data/runs/ and examples/agent_lora/data/traces.jsonl; the
same file comes from `agentkit runs export --format sft --runs-dir examples/agent_lora/data/runs -o ...`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def stage(goal: Path, into: Path) -> Path:
    """A fresh copy of the goal file and its seed workspace (so a run never edits the seeds)."""
    import yaml

    spec = yaml.safe_load(goal.read_text(encoding="utf-8"))
    seed = goal.parent / spec.get("workspace", "workspace")
    workspace = into / goal.stem / "workspace"
    if workspace.parent.exists():
        shutil.rmtree(workspace.parent)
    shutil.copytree(seed, workspace) if seed.is_dir() else workspace.mkdir(parents=True)
    spec["workspace"] = "workspace"
    staged = workspace.parent / goal.name
    staged.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return staged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", type=Path, default=HERE / "goals")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "traces.jsonl")
    args = parser.parse_args(argv)

    from agentkit.agents import Agent, RunStore
    from agentkit.agents.export import export_runs
    from agentkit.agents.fake import ScriptedChatModel

    scripts = json.loads((args.goals / "teacher_script.json").read_text(encoding="utf-8"))
    work = args.out.parent
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)  # the export reads every run there: start clean
    kept = 0
    for goal in sorted(args.goals.glob("*.yaml")):
        script = [(c["name"], c["args"]) for c in scripts[goal.stem]] + [("finish", {"answer": "done"})]
        teacher = ScriptedChatModel(script=script)
        result = Agent.from_yaml(stage(goal, work / "staged"), runs_dir=runs, model=teacher).run()
        print(f"{goal.stem:16s} {result.status:16s} steps {result.steps}")
        kept += result.status == "succeeded"  # the export keeps successful runs only
    rows = export_runs(RunStore(runs), "sft", args.out)
    print(f"{args.out}: {rows} step rows from {kept} successful runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

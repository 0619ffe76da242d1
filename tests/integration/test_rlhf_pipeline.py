"""`agentkit tune pipeline.yaml` end to end from the CLI on tiny fixtures: sft -> reward -> ppo
registers three linked entries; a failed stage is re-run alone with --stage; registered stages
are skipped; a stage that later ones were trained from is not replaced behind their back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder

pytestmark = pytest.mark.integration

QA = [("How do I make tea?", "Boil water, pour it over the tea and wait three minutes."),
      ("How do I boil an egg?", "Boil it for nine minutes, then cool it in cold water."),
      ("How do I cook rice?", "Simmer one cup of rice in two cups of water for fifteen minutes."),
      ("How do I plant basil?", "Sow it in a sunny pot and keep the soil moist.")]  # fmt: skip
TRAIN = {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, "max_length": 64}


def cli(home: Registry, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENTKIT_HOME": str(home.root), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "agentkit", "tune", *args, "--no-progress"], capture_output=True,
                          text=True, env=env, timeout=600, check=False)  # fmt: skip


def write_pipeline(root: Path, reward_model: str) -> Path:
    (root / "sft.jsonl").write_text("\n".join(json.dumps({"instruction": q, "output": a}) for q, a in QA))
    (root / "prefs.jsonl").write_text("\n".join(json.dumps({
        "prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
        "rejected": [{"role": "assistant", "content": "No."}]}) for q, a in QA))  # fmt: skip
    stages = {
        "sft": {"base": "smollm2-135m-instruct", "method": "sft", "sft": {"lora": {"r": 4}},
                "data": {"train": "sft.jsonl", "eval_fraction": 0}, "train": TRAIN, "output": "p-sft"},
        "reward": {"base": "smollm2-135m-instruct", "method": "reward", "reward": {"lora": {"r": 4}},
                   "data": {"train": "prefs.jsonl", "eval_fraction": 0}, "train": TRAIN, "output": "p-reward"},
        "ppo": {"base": "p-sft", "method": "ppo",
                "ppo": {"reward_model": reward_model, "sampling": {"max_new_tokens": 6}, "ppo_epochs": 1},
                "data": {"train": "prefs.jsonl", "eval_fraction": 0}, "train": TRAIN, "output": "p-ppo"},
    }  # fmt: skip
    for name, config in stages.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
    pipeline = {"name": "tiny-rlhf", "stages": [{"name": n, "config": f"{n}.yaml"} for n in stages]}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return root / "pipeline.yaml"


def test_pipeline_registers_three_linked_stages_and_reruns_a_failed_one(tmp_path: Path, registry: Registry) -> None:
    home = Registry(tmp_path / "home")
    home.create_entry("smollm2-135m-instruct", lambda s: copy_hf_folder(registry.path("smollm2-135m-instruct"), s, link=True))

    # The ppo stage names a reward model that does not exist: sft and reward register, ppo fails.
    pipeline = write_pipeline(tmp_path, reward_model="no-such-reward")
    failed = cli(home, str(pipeline))
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert "no-such-reward" in failed.stderr
    assert "p-sft" in home and "p-reward" in home and "p-ppo" not in home

    # Fixed, the failed stage runs alone; the others are not retrained.
    sft_created = home.card("p-sft").created
    write_pipeline(tmp_path, reward_model="p-reward")
    rerun = cli(home, str(pipeline), "--stage", "ppo")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert home.card("p-sft").created == sft_created

    sft, reward, ppo = (home.card(i) for i in ("p-sft", "p-reward", "p-ppo"))
    assert [c.lineage.pipeline["after"] for c in (sft, reward, ppo)] == [None, "p-sft", "p-reward"]
    assert {c.lineage.pipeline["name"] for c in (sft, reward, ppo)} == {"tiny-rlhf"}
    assert (ppo.lineage.start.entry, ppo.lineage.reward_model) == ("p-sft", "p-reward")
    assert (ppo.method, ppo.base, sft.method, reward.method) == ("ppo", "smollm2-135m-instruct", "sft", "reward")

    # Everything registered: a second run skips every stage.
    again = cli(home, str(pipeline), "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(r["stage"], r["ran"]) for r in json.loads(again.stdout)] == [("sft", False), ("reward", False), ("ppo", False)]

    # Re-running the reward stage would orphan the ppo entry trained against it: refused, with the fix.
    refused = cli(home, str(pipeline), "--stage", "reward")
    assert refused.returncode == 2 and "agentkit models rm p-ppo" in refused.stderr
    assert home.card("p-reward").created == reward.created


def test_pipeline_typos_fail_before_any_stage_trains(tmp_path: Path, registry: Registry) -> None:
    home = Registry(tmp_path / "home")
    pipeline = write_pipeline(tmp_path, reward_model="p-reward")
    ppo = yaml.safe_load((tmp_path / "ppo.yaml").read_text())
    ppo["ppo"]["gama"] = 0.9
    (tmp_path / "ppo.yaml").write_text(yaml.safe_dump(ppo))
    result = cli(home, str(pipeline))
    assert result.returncode == 2 and "stage 'ppo'" in result.stderr and "'ppo.gama'" in result.stderr
    assert not home.ids()  # nothing trained, nothing registered
    write_pipeline(tmp_path, reward_model="p-reward")
    unknown = cli(home, str(pipeline), "--stage", "dpo")
    assert unknown.returncode == 2 and "no stage named 'dpo'" in unknown.stderr

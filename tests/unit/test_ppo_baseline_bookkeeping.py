"""PPO bookkeeping with no model: the per-prompt baselines, the running score moments, and which
checkpoint folder a resumed run picks (pure maths and file names; the real resume is tested in
tests/integration/test_rlhf_ppo.py)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch

from agentkit.tuning.ppo.advantages import RunningMoments, per_prompt_baseline
from agentkit.tuning.ppo.trainer import CHECKPOINT_FILE, latest_checkpoint


def test_mean_and_leave_one_out_baselines_per_prompt_group() -> None:
    scores = torch.tensor([1.0, 2.0, 3.0, 6.0, 10.0, 10.0, 10.0, 14.0])  # two prompts x 4 samples
    mean = per_prompt_baseline(scores, 4, "mean")
    assert mean.tolist() == [3.0] * 4 + [11.0] * 4
    loo = per_prompt_baseline(scores, 4, "leave_one_out")
    assert loo.tolist() == pytest.approx([11 / 3, 10 / 3, 3.0, 2.0, 34 / 3, 34 / 3, 34 / 3, 10.0])
    # Subtracting the leave-one-out baseline is the mean-baseline advantage scaled by k / (k - 1).
    assert (scores - loo).tolist() == pytest.approx(((scores - mean) * 4 / 3).tolist())
    assert per_prompt_baseline(scores, 4, "none").tolist() == [0.0] * 8


def test_baseline_refuses_broken_groups() -> None:
    with pytest.raises(ValueError, match="groups"):
        per_prompt_baseline(torch.ones(6), 4, "mean")
    with pytest.raises(ValueError, match="groups"):
        per_prompt_baseline(torch.ones(4), 1, "leave_one_out")


def test_running_moments_match_the_whole_sample_and_round_trip() -> None:
    batches = [[0.5, 1.5, -2.0], [3.0], [0.0, 0.25, 7.0, -1.0]]
    moments = RunningMoments()
    for batch in batches:
        moments.update(batch)
    everything = [x for b in batches for x in b]
    assert moments.count == len(everything)
    assert moments.mean == pytest.approx(statistics.fmean(everything))
    assert moments.std == pytest.approx(statistics.pstdev(everything))
    copy = RunningMoments()
    copy.load_state_dict(moments.state_dict())
    assert (copy.count, copy.mean, copy.std) == (moments.count, moments.mean, moments.std)


def test_latest_checkpoint_skips_incomplete_folders(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    for name, complete in (("checkpoint-000010", True), ("checkpoint-000020", True), ("checkpoint-000030", False),
                           (".tmp-checkpoint-000040", True)):  # fmt: skip
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / CHECKPOINT_FILE).write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-000020"

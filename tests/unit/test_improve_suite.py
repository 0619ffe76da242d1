"""`agentkit improve`'s suite file and decision rule, without a model: the paired gain and its
standard error, when a candidate is promoted, and suites refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentkit.agents.improve_suite import PromoteSettings, load_suite, paired_gain, should_promote
from agentkit.errors import BadInputError


def test_paired_gain_is_the_mean_per_goal_difference_with_its_standard_error() -> None:
    stats = paired_gain([0, 0, 1, 1, 0], [1, 1, 1, 0, 1])
    assert stats["gain"] == pytest.approx(0.4) and stats["gain_goals"] == pytest.approx(2)
    # differences 1, 1, 0, -1, 1: sd 0.8944, / sqrt 5
    assert stats["se"] == pytest.approx(0.894427 / 5**0.5, rel=1e-5)
    assert (stats["champion_rate"], stats["candidate_rate"], stats["goals"]) == (0.4, 0.8, 5)


def test_a_worse_or_equal_candidate_is_never_promoted() -> None:
    settings = PromoteSettings(min_gain_se=0, min_goals=0)
    assert should_promote(paired_gain([1, 1, 0], [0, 1, 0]), settings)[0] is False
    assert should_promote(paired_gain([1, 0], [1, 0]), settings)[0] is False


def test_a_gain_inside_its_standard_error_or_under_min_goals_is_not_promoted() -> None:
    noisy = paired_gain([0, 1, 0, 1], [1, 0, 1, 1])  # +0.25, SE 0.479
    ok, why = should_promote(noisy, PromoteSettings(min_gain_se=1.0, min_goals=0))
    assert not ok and "x SE" in why
    small = paired_gain([0] * 10, [1] + [0] * 9)
    ok, why = should_promote(small, PromoteSettings(min_gain_se=0.0, min_goals=2))
    assert not ok and "min_goals" in why


def test_a_clear_gain_is_promoted() -> None:
    clear = paired_gain([0, 0, 0, 1, 0, 0], [1, 1, 1, 1, 1, 0])
    ok, why = should_promote(clear, PromoteSettings(min_gain_se=2.0, min_goals=3))
    assert ok, why


def _goal(folder: Path, name: str, sentence: str) -> None:
    spec = {"name": name, "goals": [sentence], "checks": [{"file_exists": f"{name}.txt"}]}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")


def _suite(tmp_path: Path, **fields) -> Path:
    (tmp_path / "g").mkdir(exist_ok=True)
    _goal(tmp_path / "g", "a", "Write a to a.txt.")
    _goal(tmp_path / "g", "b", "Write b to b.txt.")
    data = {"name": "s", "model": {"model": "smollm2-135m-instruct"}, "train": ["g/a.yaml"], "heldout": ["g/b.yaml"],
            **fields}  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_suite_loads_its_goal_globs(tmp_path: Path) -> None:
    suite, goals = load_suite(_suite(tmp_path))
    assert [g.stem for g in goals.train] == ["a"] and [g.stem for g in goals.heldout] == ["b"]
    assert suite.promote.alias == "agent-default" and suite.collect.attempts == 3


def test_a_heldout_goal_that_is_a_train_goal_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"held-out goal\(s\) a are also train goals"):
        load_suite(_suite(tmp_path, heldout=["g/*.yaml"]))


def test_the_same_sentence_under_another_name_is_overlap_too(tmp_path: Path) -> None:
    path = _suite(tmp_path)
    _goal(tmp_path / "g", "b", "Write a to a.txt.")
    with pytest.raises(BadInputError, match=r"b are also train goals"):
        load_suite(path)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"heldout": ["g/none*.yaml"]}, "'heldout': 'g/none*.yaml' matches no goal file"),
        ({"rounds": 3}, "rounds"),
        ({"collect": {"attempts": 0}}, "collect.attempts"),
        ({"strategy": "smart"}, "'strategy'"),
        ({"tune": {"lora": {"rank": 8}}}, "tune.lora"),
        ({"tune": {"lora": {"init_adapter": "x"}}}, "init_adapter is set by the loop"),
        ({"tune": {"train": {"learning_rat": 0.1}}}, "tune.train"),
        ({"model": {"model": "smollm2-135m-instruct", "engine": "vllm"}}, "model.engine"),
    ],
)
def test_bad_suites_are_refused_in_one_line(tmp_path: Path, fields: dict, needle: str) -> None:
    with pytest.raises(BadInputError) as info:
        load_suite(_suite(tmp_path, **fields))
    assert needle in str(info.value) and "\n" not in str(info.value).strip()


def test_the_example_suite_loads_with_its_44_goals_split_24_20() -> None:
    suite, goals = load_suite(Path(__file__).resolve().parents[2] / "examples" / "improve" / "suite.yaml")
    assert (len(goals.train), len(goals.heldout)) == (24, 20)
    assert suite.tune.data == "all" and suite.collect.attempts == 2


def test_two_goal_files_with_one_name_in_a_split_are_refused(tmp_path: Path) -> None:
    path = _suite(tmp_path, train=["g/a.yaml", "h/a.yaml"])
    (tmp_path / "h").mkdir()
    _goal(tmp_path / "h", "a", "Write c to c.txt.")
    with pytest.raises(BadInputError, match=r"field 'train': two goal files are named a\."):
        load_suite(path)

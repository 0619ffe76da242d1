"""goal.yaml validation through `agentkit run`: a bad file is one line naming file:line and field, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkit.agents.spec import load_goal
from agentkit.cli.app import main
from agentkit.errors import BadInputError

GOOD = """name: t
goals:
  - Read the file a.txt.
tools: [read_file]
budgets:
  max_steps: 3
checks:
  - file_contains: out.txt
    text: "42"
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "workspace").mkdir(exist_ok=True)
    path = tmp_path / "goal.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_goal_loads_with_workspace_relative_to_file(tmp_path: Path) -> None:
    spec, workspace = load_goal(_write(tmp_path, GOOD))
    assert spec.goals == ["Read the file a.txt."]
    assert spec.budgets.max_steps == 3
    assert workspace == (tmp_path / "workspace").resolve()
    assert spec.checks[0].file_contains == "out.txt"


def test_provider_string_becomes_a_provider_spec(tmp_path: Path) -> None:
    spec, _ = load_goal(_write(tmp_path, GOOD + "model: openai:gpt-4o-mini\n"))
    assert (spec.model_spec().provider, spec.model_spec().model) == ("openai", "gpt-4o-mini")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("budgets:\n  max_steps: 3", "budgets:\n  max_stepz: 3"), ["goal.yaml:6", "budgets.max_stepz", "max_steps"]),
        (GOOD + "colour: blue\n", ["goal.yaml:10", "'colour'", "unknown field"]),
        (GOOD.replace("max_steps: 3", "max_steps: many"), ["goal.yaml:6", "budgets.max_steps"]),
        (GOOD.replace("    text: \"42\"\n", "    txt: \"42\"\n"), ["goal.yaml:9", "checks.0"]),
        (GOOD.replace("goals:\n  - Read the file a.txt.\n", "goals: []\n"), ["goal.yaml:2", "'goals'"]),
        ("goals: [a\n", ["goal.yaml:2:1: invalid YAML", "flow sequence at 1:8"]),
    ],
)
def test_bad_goal_file_exits_2_with_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   text: str, expected: list[str]) -> None:  # fmt: skip
    path = _write(tmp_path, text)
    code = main(["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for part in expected:
        assert part in err, err
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_missing_goal_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_load_goal_raises_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="model.adapterz"):
        load_goal(_write(tmp_path, GOOD + "model:\n  model: x\n  adapterz: y\n"))


@pytest.mark.parametrize("goal", sorted((Path(__file__).resolve().parents[2] / "examples").glob("**/goal*.yaml"))
                         + sorted((Path(__file__).resolve().parents[2] / "examples" / "goals").glob("*.yaml")),
                         ids=lambda p: p.parent.name + "/" + p.name)  # fmt: skip
def test_example_goal_files_load(goal: Path) -> None:
    spec, workspace = load_goal(goal)
    assert spec.goals and workspace.is_absolute()

"""A goal is checked whole before anything is written: a refused goal leaves no run folder and no
workspace; a goal that only writes gets its workspace made. No model is loaded here."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkit.agents.agent import Agent
from agentkit.agents.fake import ScriptedChatModel
from agentkit.cli.app import main


def _goal(folder: Path, model: str, extra: str = "") -> Path:
    path = folder / "goal.yaml"
    path.write_text(
        f"name: t\ngoals: [write hi to a.txt]\nmodel: {model}\nworkspace: ws\nfiles:\n  in.txt: hello\n{extra}",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("model", ["no-such-model", "{model: smollm2-135m-instruct, adapter: no-such-adapter}"])
def test_unknown_model_or_adapter_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], model: str
) -> None:
    monkeypatch.setenv("AGENTKIT_HOME", str(tmp_path / "home"))
    goal = _goal(tmp_path, model)
    assert main(["run", str(goal), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such" in err[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "ws").exists()


def test_a_goal_that_only_writes_gets_its_workspace_made_fake_model(tmp_path: Path) -> None:
    """No `files:` and a `workspace:` that does not exist yet: the run makes it (before: refused)."""
    workspace = tmp_path / "new" / "ws"
    agent = Agent(model=ScriptedChatModel(script=[("write_file", {"path": "a.txt", "content": "hi"}),
                                                  ("finish", {"answer": "done"})]),  # fmt: skip
                  goals=["write hi to a.txt"], workspace=workspace, runs_dir=tmp_path / "runs")
    result = agent.run()
    assert result.status == "finished" and (workspace / "a.txt").read_text() == "hi"


def test_files_outside_the_workspace_are_refused_before_the_run(tmp_path: Path) -> None:
    from agentkit.errors import BadInputError

    agent = Agent(model=ScriptedChatModel(script=[("finish", {"answer": "x"})]), goals=["g"],
                  workspace=tmp_path / "ws", files={"../escape.txt": "x"}, runs_dir=tmp_path / "runs")  # fmt: skip
    with pytest.raises(BadInputError, match="files: .*leaves the workspace"):
        agent.run()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape.txt").exists()

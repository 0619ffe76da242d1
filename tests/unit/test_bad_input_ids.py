"""Issue 12 §4: ids with a trailing newline, files that are not UTF-8, YAML syntax errors and corrupt
GGUF files all end as one line and exit 2, and leave nothing behind. No model is loaded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentkit.cli.app import main
from agentkit.errors import BadInputError
from agentkit.names import EXTENSION_NAME, INDEX_NAME, PROMPT_NAME, REGISTRY_ID, VECTOR_MEMORY_NAME, NameRule
from agentkit.registry import ModelCard, Registry

LATIN1 = "café".encode("latin-1")  # b"caf\xe9": the 0xe9 starts a UTF-8 sequence that never ends


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry home of this test's own."""
    path = tmp_path / "home"
    monkeypatch.setenv("AGENTKIT_HOME", str(path))
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str], *, after_progress: bool = False) -> str:
    """The one line stderr holds (or, `after_progress`, the one line after a command's progress lines)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in lines if line.startswith("error: ")]) == 1, lines
    lines = lines[-1:] if after_progress else lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0] and "Fix:" in lines[0]
    return lines[0]


def _names_under(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*")] if folder.exists() else []


# ---- ids and names ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "good"),
    [(REGISTRY_ID, "my-model.v2"), (INDEX_NAME, "docs"), (VECTOR_MEMORY_NAME, "Assistant"),
     (PROMPT_NAME, "rag_answer"), (EXTENSION_NAME, "my_tool")],
    ids=lambda v: v.kind if isinstance(v, NameRule) else v,
)  # fmt: skip
def test_every_name_rule_refuses_a_trailing_newline(rule: NameRule, good: str) -> None:
    # re.match(r"^...$") accepted "good\n": `$` also matches before a final newline
    assert rule.check(good) == good
    for bad in (good + "\n", good + "\r\n", "\n" + good, good + "\n\n"):
        with pytest.raises(BadInputError, match=re.escape(f"Invalid {rule.kind} {bad!r}.")):
            rule.check(bad)


def test_models_import_refuses_an_id_with_a_newline(home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    assert main(["models", "import", str(gguf), "--id", "mine\n"]) == 2
    line = _one_error_line(capsys)
    assert "Invalid registry id 'mine\\n'" in line and "a-z, 0-9" in line
    assert not any("\n" in name for name in _names_under(home)) and not (home / "models").exists()


def test_registry_api_refuses_an_id_with_a_newline(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "home")
    written = []
    with pytest.raises(BadInputError, match="Invalid registry id"):
        registry.create_entry("mine\n", lambda stage: written.append(stage) or {})
    assert written == [] and not (tmp_path / "home").exists()  # refused before any folder or lock
    with pytest.raises(BadInputError, match="Invalid registry id"):
        registry.entry_dir("mine\n")
    assert "mine\n" not in registry
    with pytest.raises(ValidationError, match="Invalid registry id"):
        ModelCard(id="mine\n", kind="base", task="causal_lm", source={"type": "gguf", "ref": "x"}, weights={})


def test_tune_output_with_a_newline_is_refused_before_training() -> None:
    from agentkit.tuning import TuneConfig

    with pytest.raises(ValidationError, match="Invalid registry id 'out\\\\n'"):
        TuneConfig.model_validate({"base": "smollm2-135m-instruct", "method": "lora",
                                   "data": {"train": "t.jsonl"}, "output": "out\n"})  # fmt: skip


def test_index_add_refuses_a_name_with_a_newline(home: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    doc = tmp_path / "a.txt"
    doc.write_text("hello", encoding="utf-8")
    assert main(["index", "add", "docs\n", str(doc), "--no-progress"]) == 2
    assert "Invalid index name 'docs\\n'" in _one_error_line(capsys)
    assert _names_under(home) == []


def test_index_create_api_refuses_a_name_with_a_newline(tmp_path: Path) -> None:
    from agentkit.indexes.index import Index

    with pytest.raises(BadInputError, match="Invalid index name"):
        Index.create("docs\n", home=tmp_path / "home")
    assert not (tmp_path / "home").exists()


def test_vector_memory_refuses_a_name_with_a_newline(tmp_path: Path) -> None:
    from agentkit.memory.vector import VectorMemory

    with pytest.raises(BadInputError, match="Invalid vector memory name 'notes\\\\n'"):
        VectorMemory("notes\n", root=tmp_path / "vectors")
    assert not (tmp_path / "vectors").exists()


def test_prompt_file_whose_name_ends_in_a_newline_is_not_an_address(tmp_path: Path) -> None:
    from agentkit.prompts.library import PromptLibrary

    (tmp_path / "greet\n.yaml").write_text("messages: [{role: user, template: hi}]\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="is not a prompt address"):
        PromptLibrary([tmp_path]).names()


# ---- files that are not UTF-8 -----------------------------------------------------------------
def test_latin1_goal_file_exits_2_naming_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    goal = tmp_path / "goal.yaml"
    goal.write_bytes(b"name: t\ngoals:\n  - Order a " + LATIN1 + b"\n")
    assert main(["run", str(goal), "--runs-dir", str(tmp_path / "runs")]) == 2
    line = _one_error_line(capsys)
    assert f"{goal}:3: not UTF-8 text (byte 0xe9" in line and "save the file as UTF-8" in line
    assert not (tmp_path / "runs").exists()


def test_latin1_tune_yaml_exits_2_naming_the_file(home: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    config = tmp_path / "tune.yaml"
    config.write_bytes(b"# " + LATIN1 + b"\nbase: smollm2-135m-instruct\n")
    assert main(["tune", str(config)]) == 2  # a pipeline check reads it first: that must not raise
    assert f"{config}:1: not UTF-8 text" in _one_error_line(capsys)
    assert _names_under(home) == []


def test_latin1_jsonl_dataset_exits_2_naming_file_and_row(home: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    data = tmp_path / "train.jsonl"
    good = b'{"instruction": "Say hi.", "input": "", "output": "hi"}\n'
    data.write_bytes(good * 2 + b'{"instruction": "' + LATIN1 + b'", "input": "", "output": "x"}\n')
    config = tmp_path / "tune.yaml"
    config.write_text("base: smollm2-135m-instruct\nmethod: lora\ndata: {train: train.jsonl, format: alpaca}\n"
                      "output: out\n", encoding="utf-8")  # fmt: skip
    assert main(["tune", str(config), "--no-progress"]) == 2
    assert f"{data}:3: not UTF-8 text" in _one_error_line(capsys, after_progress=True)
    assert not (home / "models").exists()  # the base was not even converted


def test_latin1_preference_and_prompt_files_raise_bad_input(tmp_path: Path) -> None:
    from agentkit.prompts.spec import parse_prompt_file
    from agentkit.tuning.preference import load_prompts

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'{"prompt": "' + LATIN1 + b'", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(BadInputError, match=r"pairs.jsonl:1: not UTF-8"):
        load_prompts(pairs)
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"first\n" + LATIN1 + b"\n")
    with pytest.raises(BadInputError, match=r"prompts.txt:2: not UTF-8"):
        load_prompts(prompts)
    spec = tmp_path / "greet.yaml"
    spec.write_bytes(b"messages: [{role: user, template: " + LATIN1 + b"}]\n")
    with pytest.raises(BadInputError, match=r"greet.yaml:1: not UTF-8"):
        parse_prompt_file(spec, "greet", 1)


# ---- YAML syntax errors -----------------------------------------------------------------------
def test_tune_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    config = tmp_path / "tune.yaml"
    config.write_text("base: smollm2-135m-instruct\nmethod: lora: x\n", encoding="utf-8")
    assert main(["tune", str(config)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {config}:2:13: invalid YAML: mapping values are not allowed here.")
    assert "<unicode string>" not in line


def test_pipeline_stage_syntax_error_names_the_stage_file(tmp_path: Path) -> None:
    from agentkit.tuning.pipeline import Pipeline

    (tmp_path / "sft.yaml").write_text("base: [x\n", encoding="utf-8")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("name: p\nstages:\n  - {name: sft, config: sft.yaml}\n", encoding="utf-8")
    with pytest.raises(BadInputError) as err:
        Pipeline.from_yaml(pipeline)
    message = str(err.value)
    assert message.startswith(f"stage 'sft': {tmp_path / 'sft.yaml'}:2:1: invalid YAML")
    assert "(while parsing a flow sequence at 1:7)" in message and "\n" not in message


# ---- corrupt GGUF -----------------------------------------------------------------------------
def _truncated_builtin(tmp_path: Path) -> Path:
    from agentkit.registry.builtins import SMOLLM2_GGUF, builtin_specs

    source = builtin_specs()["smollm2-135m-instruct"].package_dir() / SMOLLM2_GGUF
    target = tmp_path / "partial.gguf"
    with source.open("rb") as src:
        target.write_bytes(src.read(2 << 20))  # the header and vocabulary whole, the tensors cut off
    return target


@pytest.mark.parametrize(
    "content",
    [lambda _: bytes(range(256)) * 4, lambda _: b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 200, _truncated_builtin],
    ids=["random-bytes", "gguf-magic-then-garbage", "truncated-download"],
)
def test_models_import_of_a_corrupt_gguf_exits_2_naming_the_file(home: Path, tmp_path: Path, content,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    gguf = tmp_path / "model.gguf"
    data = content(tmp_path)
    if isinstance(data, Path):
        data.rename(gguf)
    else:
        gguf.write_bytes(data)
    assert main(["models", "import", str(gguf)]) == 2
    line = _one_error_line(capsys)
    assert f"{gguf}: not a valid GGUF file" in line and "re-download or re-export it" in line
    assert not (home / "models").exists()  # nothing published
    assert _names_under(home / "tmp") == []  # and no staging folder left behind

"""ask_model on the real built-in chat model (a tiny max_tokens), and classify on a LoRA classifier
adapter of minilm-l6 trained for a few steps by the test; unknown entries are refused at build time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.errors import BadInputError
from agentkit.models import LocalChatModel
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tools import ToolContext, build_tools, invoke_tool

pytestmark = pytest.mark.integration


def _tokens(registry: Registry, text: str) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(registry.path("smollm2-135m-instruct"))
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_ask_model_answers_within_its_token_budget(registry: Registry, tmp_path: Path) -> None:
    context = ToolContext(workspace=tmp_path)  # no agent model: the built-in answers
    tool = build_tools([{"name": "ask_model", "max_tokens": 6}], context)[0]
    out = invoke_tool(tool, {"prompt": "What is the capital of France?"}, timeout_s=120)
    assert out.ok and out.output.strip(), out.error
    assert 0 < _tokens(registry, out.output) <= 6


def test_ask_model_defaults_to_the_agents_model(registry: Registry, tmp_path: Path) -> None:
    agent_model = LocalChatModel(max_new_tokens=300, temperature=0.0)
    tool = build_tools(
        [{"name": "ask_model", "max_tokens": 5}], ToolContext(workspace=tmp_path, model=agent_model)
    )[0]
    out = invoke_tool(tool, {"prompt": "Say hello."}, timeout_s=120)
    assert out.ok and 0 < _tokens(registry, out.output) <= 5  # its own budget, not the agent's 300


def test_ask_model_refuses_unknown_entries(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no-such-adapter"):
        build_tools([{"name": "ask_model", "adapter": "no-such-adapter"}], ToolContext(workspace=tmp_path))


POSITIVE = ["a wonderful, moving film", "brilliant acting and a great story", "i loved every minute of it",
            "superb and beautiful"]  # fmt: skip
NEGATIVE = ["a dull, boring mess", "terrible acting and an awful script", "i hated every minute of it",
            "ugly and stupid"]  # fmt: skip


def test_classify_uses_a_classifier_adapter(registry: Registry, tmp_path: Path) -> None:
    from agentkit.tuning import TuneConfig, train

    home = Registry(tmp_path / "home")
    home.create_entry("minilm-l6", lambda stage: copy_hf_folder(registry.path("minilm-l6"), stage, link=True))
    data = tmp_path / "train.jsonl"
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    train(TuneConfig.model_validate({
        "base": "minilm-l6", "task": "sequence_classification", "method": "lora", "lora": {"r": 4, "alpha": 8},
        "data": {"train": str(data), "format": "text_label", "eval_fraction": 0},
        "train": {"learning_rate": 5e-3, "batch_size": 8, "max_length": 32, "max_steps": 2},
        "output": "senti-tool",
    }), registry=home)  # fmt: skip
    context = ToolContext(workspace=tmp_path / "ws", home=home.root)
    tool = build_tools([{"name": "classify", "adapter": "senti-tool"}], context)[0]
    assert "neg" in tool.description and "pos" in tool.description
    out = invoke_tool(tool, {"text": "a great, warm film"}, timeout_s=120)
    assert out.ok, out.error
    label, score = out.output.split(" (score ")
    assert label in {"neg", "pos"} and 0.5 <= float(score.rstrip(")")) <= 1.0
    empty = invoke_tool(tool, {"text": " "}, timeout_s=30)
    assert not empty.ok and "empty text" in empty.error
    with pytest.raises(BadInputError, match=r"tools\[0\] \(classify\): .*nothing-here"):
        build_tools([{"name": "classify", "adapter": "nothing-here"}], context)
    with pytest.raises(BadInputError, match=r"tools\[0\]\.adapter"):
        build_tools(["classify"], context)

"""RLHF step 1 (`method: sft`) on the built-in SmolLM2: LoRA by default (an adapter), or every
weight (`peft: full`, a base entry), both registered as method sft with their config."""

from __future__ import annotations

import json

import pytest

from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.trainer import train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    root = tmp_path_factory.mktemp("sft")
    home = Registry(root / "home")
    home.create_entry(
        "smollm2-135m-instruct", lambda s: copy_hf_folder(registry.path("smollm2-135m-instruct"), s, link=True)
    )
    rows = [{"instruction": f"Say the secret word for item {i}.", "output": f"The secret word is banana-{i % 3}."}
            for i in range(12)]  # fmt: skip
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return home


@pytest.mark.parametrize("peft", ["lora", "full"])
def test_sft_trains_and_registers_as_sft(home: Registry, peft: str) -> None:
    config = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "sft", "sft": {"peft": peft},
        "data": {"train": str(home.root.parent / "train.jsonl"), "eval_fraction": 0.25},
        "train": {"learning_rate": 1e-4 if peft == "full" else 3e-3, "batch_size": 3, "max_length": 64, "max_steps": 3},
        "output": f"sft-{peft}",
    })  # fmt: skip
    card = train(config, registry=home)
    assert card.method == "sft" and card.lineage.config["method"] == "sft"
    assert card.lineage.config["sft"]["peft"] == peft
    assert card.metrics["eval_loss"] < card.metrics["train_loss_first"] + 1.0  # finite, trained
    assert card.metrics["train_loss_last"] < card.metrics["train_loss_first"]
    if peft == "lora":
        assert card.kind.value == "adapter" and card.base == "smollm2-135m-instruct"
    else:
        assert card.kind.value == "base" and card.base is None and "model.safetensors" in card.weights
    home.verify(card.id)


def test_sft_refuses_classification(home: Registry) -> None:
    with pytest.raises(ValueError, match="method 'sft' does not apply to task 'sequence_classification'"):
        TuneConfig.model_validate({"base": "minilm-l6", "task": "sequence_classification", "method": "sft",
                                   "data": {"train": "x.csv", "format": "text_label"}, "output": "x"})  # fmt: skip

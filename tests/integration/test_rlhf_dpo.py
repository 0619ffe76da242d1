"""DPO on the built-in SmolLM2 through TRL for a few steps: the LoRA adapter moves, the base does
not, the DPO loss and implicit rewards are logged, and the adapter registers with lineage; started
from an SFT adapter, DPO continues that adapter against a frozen copy of it."""

from __future__ import annotations

import json
import math

import pytest

from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.dpo.trainer import DpoRun, completion_logps, implicit_accuracy
from agentkit.tuning.trainer import train

pytestmark = pytest.mark.integration

TOPICS = ["bread", "tea", "a bike tyre", "a bookshelf", "rice", "a tent", "soup", "a kite"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    root = tmp_path_factory.mktemp("dpo")
    home = Registry(root / "home")
    home.create_entry(
        "smollm2-135m-instruct", lambda s: copy_hf_folder(registry.path("smollm2-135m-instruct"), s, link=True)
    )
    pairs = [{"conversations": [{"from": "human", "value": f"How do I make {t}?"}],
              "chosen": {"from": "gpt", "value": f"Here is how to make {t}: gather what you need, then go step by step."},
              "rejected": {"from": "gpt", "value": "No. Figure it out yourself."}} for t in TOPICS]  # fmt: skip
    (root / "pairs.json").write_text(json.dumps(pairs))
    sft = [{"instruction": f"How do I make {t}?", "output": f"Gather what you need for {t}."} for t in TOPICS]
    (root / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in sft))
    return home


def _config(home: Registry, base: str, output: str, **train: object) -> TuneConfig:
    return TuneConfig.model_validate({
        "base": base, "method": "dpo", "dpo": {"lora": {"r": 8, "alpha": 16}, "beta": 0.1},
        "data": {"train": str(home.root.parent / "pairs.json"), "eval_fraction": 0.25},
        "train": {"learning_rate": 5e-4, "batch_size": 3, "max_length": 64, "max_steps": 3, **train},
        "output": output,
    })  # fmt: skip


def test_dpo_lora_moves_the_adapter_only_and_registers(home: Registry) -> None:
    run = DpoRun.prepare(_config(home, "smollm2-135m-instruct", "dpo-lora"), home)
    model = run.model
    frozen = {
        n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad and "lora" not in n
    }
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n}
    assert lora_b
    metrics = run.fit()
    params = dict(run.model.named_parameters())
    assert all(params[n].detach().equal(v) for n, v in frozen.items())
    assert any(not params[n].detach().equal(v) for n, v in lora_b.items())
    logs = run.trainer.state.log_history
    assert all(math.isfinite(e["loss"]) for e in logs if "loss" in e)
    assert any("rewards/chosen" in e and "rewards/margins" in e for e in logs)  # implicit rewards logged
    assert "eval_rewards/accuracies" in metrics

    card = run.register()
    assert (card.kind.value, card.task.value, card.method, card.base) == (
        "adapter",
        "causal_lm",
        "dpo",
        "smollm2-135m-instruct",
    )
    assert card.lineage.start.entry == "smollm2-135m-instruct" and card.lineage.train_pairs == 6
    assert set(card.weights) == {"adapter_model.safetensors"}  # not TRL's "ref" copy

    # Implicit reward: the trained policy against the reference (adapter disabled).
    pairs = run.eval_pairs
    trained = completion_logps(run.model, run.tokenizer, pairs, 64)
    with run.model.disable_adapter():
        reference = completion_logps(run.model, run.tokenizer, pairs, 64)
    assert all(math.isfinite(x) for pair in trained + reference for x in pair)
    assert trained != reference
    assert 0.0 <= implicit_accuracy(trained, reference) <= 1.0


def test_dpo_from_an_sft_adapter_continues_it_from_the_cli_path(home: Registry) -> None:
    sft = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "sft", "sft": {"lora": {"r": 8}},
        "data": {"train": str(home.root.parent / "sft.jsonl"), "eval_fraction": 0},
        "train": {"learning_rate": 1e-3, "batch_size": 4, "max_length": 64, "max_steps": 2}, "output": "sft-a",
    })  # fmt: skip
    assert train(sft, registry=home).method == "sft"
    card = train(_config(home, "sft-a", "dpo-on-sft"), registry=home)
    assert card.base == "smollm2-135m-instruct" and card.lineage.start.entry == "sft-a"
    assert card.lineage.start.method == "sft" and "frozen" in card.lineage.reference
    home.verify(card.id)

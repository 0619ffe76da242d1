"""LoRA on the built-in SmolLM2 for a few steps: loss falls, frozen weights stay put, the adapter
lands in the registry in PEFT format with its lineage, and LocalChatModel switches to it per call."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from agentkit.models import LocalChatModel
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.trainer import Run

pytestmark = pytest.mark.integration
QUESTION = "Say the secret word for item 7."


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:
    """A registry with a copy of the built-in and one LoRA adapter trained on a tiny fixture."""
    root = tmp_path_factory.mktemp("tune")
    home = Registry(root / "home")
    home.create_entry("smollm2-135m-instruct", lambda s: copy_hf_folder(registry.path("smollm2-135m-instruct"), s, link=True))
    rows = [{"instruction": f"Say the secret word for item {i}.", "input": "", "output": f"The secret word is banana-{i % 3}."}
            for i in range(16)]  # fmt: skip
    data = root / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    config = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "task": "causal_lm", "method": "lora",
        "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "data": {"train": str(data), "format": "alpaca", "eval_fraction": 0.25},
        "train": {"learning_rate": 2e-3, "batch_size": 4, "max_length": 96, "max_steps": 6},
        "output": "banana-lora",
    })  # fmt: skip
    run = Run.prepare(config, home)
    frozen = {n: p.detach().clone() for n, p in run.model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in run.model.named_parameters() if p.requires_grad}
    metrics = run.fit()
    after = dict(run.model.named_parameters())
    card = run.register()
    return {"home": home, "card": card, "metrics": metrics, "frozen": frozen, "trainable": trainable,
            "after": after, "data": data}  # fmt: skip


def test_loss_fell_and_only_lora_weights_moved(tuned: dict) -> None:
    metrics = tuned["metrics"]
    assert metrics["steps"] == 6
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert all(n.count("lora_") for n in tuned["trainable"]) and tuned["trainable"]
    for name, before in tuned["frozen"].items():
        assert tuned["after"][name].detach().equal(before), f"frozen weight {name} moved"
    moved = [n for n, before in tuned["trainable"].items() if not tuned["after"][n].detach().equal(before)]
    assert len(moved) == len(tuned["trainable"])


def test_adapter_is_registered_in_peft_format_with_lineage(tuned: dict) -> None:
    home, card = tuned["home"], tuned["card"]
    assert card.kind.value == "adapter" and card.base == "smollm2-135m-instruct" and card.method == "lora"
    folder = home.entry_dir("banana-lora")
    assert (folder / "adapter_config.json").is_file() and set(card.weights) == {"adapter_model.safetensors"}
    home.verify("banana-lora")
    lineage = card.lineage
    assert lineage.data_sha256 == hashlib.sha256(tuned["data"].read_bytes()).hexdigest()
    assert lineage.data_rows == 16 and lineage.train_rows + lineage.eval_rows == 16
    assert lineage.base_weights_sha256 == home.card("smollm2-135m-instruct").weights
    assert lineage.config["lora"]["r"] == 8 and card.chat_template and "eval_loss" in card.metrics
    from safetensors import safe_open

    with safe_open(folder / "adapter_model.safetensors", "pt") as handle:
        assert all(".default." not in key for key in handle.keys())  # no runtime adapter name in keys


def test_plain_peft_loads_the_registry_folder(tuned: dict) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    home = tuned["home"]
    base = AutoModelForCausalLM.from_pretrained(home.path("smollm2-135m-instruct"), use_safetensors=True)
    ids = torch.tensor([[1, 504, 3400, 314]])
    with torch.no_grad():
        plain = base(ids).logits
        model = PeftModel.from_pretrained(base, home.path("banana-lora"))
        adapted = model(ids).logits
    assert not torch.allclose(plain, adapted)


def test_hot_swap_per_call_on_one_base(tuned: dict) -> None:
    llm = LocalChatModel(home=str(tuned["home"].root), max_new_tokens=12)
    base_reply = llm.invoke(QUESTION).content
    tuned_reply = llm.invoke(QUESTION, adapter="banana-lora").content
    assert tuned_reply != base_reply
    assert llm.bind(adapter="banana-lora").invoke(QUESTION).content == tuned_reply
    assert LocalChatModel(home=str(tuned["home"].root), adapter="banana-lora", max_new_tokens=12).invoke(QUESTION).content == tuned_reply
    assert "".join(c.content for c in llm.stream(QUESTION, adapter="banana-lora")) == tuned_reply
    assert llm.invoke(QUESTION).content == base_reply  # the base is unchanged after an adapter call

    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = llm.invoke(QUESTION, adapter="banana-lora" if i % 2 else None).content

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[i] == (tuned_reply if i % 2 else base_reply) for i in range(6))


def test_output_id_taken_is_refused_before_training(tuned: dict) -> None:
    from agentkit.errors import BadInputError

    config = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "lora", "data": {"train": str(tuned["data"])},
        "output": "banana-lora",
    })  # fmt: skip
    with pytest.raises(BadInputError, match="already exists"):
        Run.prepare(config, tuned["home"])


def test_export_loads_with_plain_peft_and_merge_matches_the_adapter(tuned: dict, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from agentkit.registry.adapters import export_adapter, merge_adapter

    home = tuned["home"]
    target = export_adapter(home, "banana-lora", tmp_path / "exported")
    assert {"adapter_config.json", "adapter_model.safetensors", "agentkit_card.json"} <= {p.name for p in target.iterdir()}
    base = AutoModelForCausalLM.from_pretrained(home.path("smollm2-135m-instruct"), use_safetensors=True)
    ids = torch.tensor([[1, 504, 3400, 314]])
    with torch.no_grad():
        exported = PeftModel.from_pretrained(base, target)(ids).logits

    merged = merge_adapter(home, "banana-lora", "banana-merged")
    assert merged.kind.value == "base" and merged.lineage.merged_from == "banana-lora"
    with torch.no_grad():
        folded = AutoModelForCausalLM.from_pretrained(home.path("banana-merged"), use_safetensors=True)(ids).logits
    assert torch.allclose(exported, folded, atol=1e-4)
    # a base entry (a merge here; a full fine-tune is one too) exports as a folder plain transformers loads
    plain = export_adapter(home, "banana-merged", tmp_path / "merged-export")
    assert "agentkit_card.json" in {p.name for p in plain.iterdir()} and not list(plain.glob("*.gguf"))
    with torch.no_grad():
        reloaded = AutoModelForCausalLM.from_pretrained(plain, use_safetensors=True)(ids).logits
    assert torch.equal(reloaded, folded)
    llm = LocalChatModel(home=str(home.root), max_new_tokens=12)
    assert llm.invoke(QUESTION, model="banana-merged").content == llm.invoke(QUESTION, adapter="banana-lora").content
    from agentkit.errors import BadInputError

    with pytest.raises(BadInputError, match="not empty"):
        export_adapter(home, "banana-lora", target)

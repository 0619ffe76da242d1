"""Every tuning method on the built-in SmolLM2 for a few steps: held-out loss falls from where the
base model starts, base weights stay put (PEFT methods), and the result registers."""

from __future__ import annotations

import json

import pytest

from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.trainer import Run

pytestmark = pytest.mark.integration

BLOCKS = {
    "lora": {"r": 8, "alpha": 16, "use_rslora": True},
    "prefix_tuning": {"num_virtual_tokens": 8},
    "p_tuning_v2": {"num_virtual_tokens": 8},
    "prompt_tuning": {"num_virtual_tokens": 8, "init": "text", "init_text": "Answer the question:"},
    "p_tuning": {"num_virtual_tokens": 8, "encoder": "lstm"},
    "full": {},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    root = tmp_path_factory.mktemp("methods")
    home = Registry(root / "home")
    home.create_entry("smollm2-135m-instruct", lambda s: copy_hf_folder(registry.path("smollm2-135m-instruct"), s, link=True))
    rows = [{"instruction": f"Say the secret word for item {i}.", "output": f"The secret word is banana-{i % 3}."}
            for i in range(12)]  # fmt: skip
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return home


@pytest.mark.parametrize("method", list(BLOCKS))
def test_method_learns_from_the_base_loss_and_registers(home: Registry, method: str) -> None:
    config = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": method, method: BLOCKS[method],
        "data": {"train": str(home.root.parent / "train.jsonl"), "eval_fraction": 0.25},
        "train": {"learning_rate": 1e-4 if method == "full" else 3e-3, "batch_size": 3, "max_length": 64,
                  "max_steps": 4},
        "output": f"m-{method.replace('_', '-')}",
    })  # fmt: skip
    run = Run.prepare(config, home)
    start = run.trainer.evaluate()["eval_loss"]
    frozen = {n: p.detach().clone() for n, p in run.model.named_parameters() if not p.requires_grad}
    metrics = run.fit()
    # Every method must start near the base model (2.7 on this data) -- P-Tuning v2 with PEFT's
    # N(0, 1) prefixes started at 7.4 before activation init -- and improve on held-out rows.
    assert start < 3.2, f"{method} starts far from the base model: eval loss {start:.2f}"
    assert metrics["eval_loss"] < start
    params = dict(run.model.named_parameters())
    assert all(params[n].detach().equal(before) for n, before in frozen.items())
    if method != "full":
        assert frozen and all("base_model" in n for n in frozen)
    card = run.register()
    home.verify(card.id)
    if method == "full":
        assert card.kind.value == "base" and card.base is None and "model.safetensors" in card.weights
    else:
        assert card.kind.value == "adapter" and card.weights == {"adapter_model.safetensors": card.weights["adapter_model.safetensors"]}

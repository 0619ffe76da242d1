"""`lora.init_adapter` on the built-in SmolLM2: a second LoRA starts from the first one's weights and
settings, trains on (loss falls, the base stays put) and records where it started; ids that are not
a LoRA of this base, and settings that contradict the adapter, are refused before weights load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentkit.errors import BadInputError
from agentkit.registry import Registry, SourceInfo
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.lora.init_adapter import resolve_init_adapter
from agentkit.tuning.trainer import Run

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
FIRST = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}  # r=4: not LoRA's default of 8


def _config(data: Path, output: str, block: dict[str, Any], method: str = "lora") -> TuneConfig:
    return TuneConfig.model_validate({
        "base": BASE, "method": method, method: block,
        "data": {"train": str(data), "format": "alpaca"},
        "train": {"learning_rate": 2e-3, "batch_size": 4, "max_length": 64, "max_steps": 4},
        "output": output,
    })  # fmt: skip


def _fake_adapter(home: Registry, entry_id: str, **card: Any) -> None:
    """A card with a dummy weights file: enough for the checks made before anything loads."""

    def write(stage: Path) -> dict[str, Any]:
        (stage / "adapter_model.safetensors").write_bytes(b"never read")
        source = SourceInfo(type="tuning", ref="test")
        return {"kind": "adapter", "task": "causal_lm", "source": source, **card}

    home.create_entry(entry_id, write)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:
    """A LoRA tuned for 4 steps, then a second one continued from it for 4 more."""
    root = tmp_path_factory.mktemp("lora-init")
    home = Registry(root / "home")
    home.create_entry(BASE, lambda s: copy_hf_folder(registry.path(BASE), s, link=True))
    rows = [{"instruction": f"Say the secret word for item {i}.", "input": "",
             "output": f"The secret word is kiwi-{i % 3}."} for i in range(8)]  # fmt: skip
    data = root / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    first = Run.prepare(_config(data, "kiwi-lora", FIRST), home)
    first_metrics = first.fit()
    first_card = first.register()

    second = Run.prepare(_config(data, "kiwi-lora-2", {"init_adapter": "kiwi-lora", "dropout": 0.0}), home)
    params = dict(second.model.named_parameters())
    start = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    q_proj = second.model.get_submodule("base_model.model.model.layers.0.self_attn.q_proj")
    metrics = second.fit()
    return {
        "home": home, "data": data, "first_metrics": first_metrics, "first_card": first_card,
        "start": start, "frozen": frozen, "settings": second.config.method_config,
        "dropout": q_proj.lora_dropout["default"], "metrics": metrics,
        "after": dict(second.model.named_parameters()), "card": second.register(),
    }  # fmt: skip


def test_second_run_starts_from_the_first_adapters_weights_and_settings(runs: dict) -> None:
    from safetensors.torch import load_file

    saved = load_file(runs["home"].entry_dir("kiwi-lora") / "adapter_model.safetensors")
    # Saved keys carry no adapter name: `...q_proj.lora_A.weight` is `...q_proj.lora_A.default.weight` here.
    start = {n.replace(".default.", "."): t for n, t in runs["start"].items()}
    assert set(start) == set(saved) and len(saved) == 30 * 2 * 2  # 30 layers x (q, v) x (A, B)
    assert all(start[k].equal(saved[k]) for k in saved)
    assert any(t.abs().sum() > 0 for k, t in saved.items() if "lora_B" in k)  # trained: not the B = 0 init
    settings = runs["settings"]
    assert (settings.r, settings.alpha, settings.target_modules) == (4, 8, ["q_proj", "v_proj"])
    assert type(runs["dropout"]).__name__ == "Identity"  # this block's dropout (0), not the adapter's 0.05


def test_continued_run_trains_on_and_keeps_the_base(runs: dict) -> None:
    metrics = runs["metrics"]
    assert metrics["steps"] == 4 and metrics["train_loss_last"] < metrics["train_loss_first"]
    # A continuation: its first loss is already below the fresh LoRA's first loss on the same rows
    # (measured: 2.25 against 3.08; the first run ended at 2.21).
    assert metrics["train_loss_first"] < runs["first_metrics"]["train_loss_first"]
    for name, before in runs["frozen"].items():
        assert runs["after"][name].detach().equal(before), f"frozen weight {name} moved"
    assert all(not runs["after"][n].detach().equal(before) for n, before in runs["start"].items())


def test_lineage_records_the_init_adapter(runs: dict) -> None:
    card, home = runs["card"], runs["home"]
    assert card.kind.value == "adapter" and card.base == BASE and card.method == "lora"
    assert card.lineage.init_adapter == "kiwi-lora"
    assert card.lineage.init_adapter_weights_sha256 == runs["first_card"].weights
    block = card.lineage.config["lora"]  # the settings really trained, not the block's defaults
    assert block["init_adapter"] == "kiwi-lora" and {k: block[k] for k in FIRST} == FIRST
    assert runs["first_card"].lineage.init_adapter is None
    home.verify("kiwi-lora-2")


@pytest.mark.parametrize(
    ("init", "block", "match"),
    [
        ("no-such-lora", {}, r"lora\.init_adapter: 'no-such-lora' is not in the registry"),
        (BASE, {}, r"'smollm2-135m-instruct' is not a LoRA adapter \(kind base, method 'import'\)"),
        ("prefix-adapter", {}, r"'prefix-adapter' is not a LoRA adapter \(kind adapter, method 'prefix_"),
        ("other-base-lora", {}, r"'other-base-lora' is a causal_lm adapter of base 'smollm2-copy'"),
        ("kiwi-lora", {"r": 8}, r"lora\.r: 8, but init_adapter 'kiwi-lora' was trained with 4"),
        ("kiwi-lora", {"target_modules": "all-linear"}, r"lora\.target_modules: 'all-linear', but"),
    ],
)
def test_refused_before_any_weights_load(runs: dict, init: str, block: dict, match: str) -> None:
    home = runs["home"]
    if "other-base-lora" not in home:
        _fake_adapter(home, "other-base-lora", base="smollm2-copy", method="lora",
                      lineage={"config": {"lora": {"r": 4}}})  # fmt: skip
        _fake_adapter(home, "prefix-adapter", base=BASE, method="prefix_tuning",
                      lineage={"config": {"prefix_tuning": {}}})  # fmt: skip
    with pytest.raises(BadInputError, match=match):
        Run.prepare(_config(runs["data"], "refused", {"init_adapter": init, **block}), home)
    assert "refused" not in home


def test_settings_equal_to_the_adapters_and_sft_loras_are_accepted(runs: dict) -> None:
    home = runs["home"]
    same = {"init_adapter": "kiwi-lora", **FIRST, "target_modules": ["v_proj", "q_proj"]}  # order is free
    config, card = resolve_init_adapter(_config(runs["data"], "ok", same), home)
    assert card.id == "kiwi-lora" and config.method_config.init_dir == home.entry_dir("kiwi-lora")

    sft_block = {"peft": "lora", "r": 16}  # target_modules unset: the default, all-linear
    _fake_adapter(home, "sft-lora", base=BASE, method="sft", lineage={"config": {"sft": sft_block}})
    config, _ = resolve_init_adapter(_config(runs["data"], "ok", {"init_adapter": "sft-lora"}), home)
    assert config.method_config.r == 16 and config.method_config.target_modules == "all-linear"


def test_blocks_that_would_ignore_init_adapter_reject_it(runs: dict) -> None:
    with pytest.raises(ValidationError, match=r"sft\.init_adapter"):
        _config(runs["data"], "sft-out", {"init_adapter": "kiwi-lora"}, method="sft")

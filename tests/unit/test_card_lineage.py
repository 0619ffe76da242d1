"""The card's typed lineage: cards written before it (their lineage a free dict, with the start
recorded as `started_from` / `merged_adapter` by reward and DPO, and as `policy_from` / `base` by the
RL stages) still load from disk, and every reader finds the same facts through the model."""

from __future__ import annotations

import json
from pathlib import Path

from agentkit.registry import Registry
from agentkit.registry.card import CARD_FILE, Lineage, ModelCard, StartLineage

SHA = {"model.safetensors": "a" * 64}
ADAPTER_SHA = {"adapter_model.safetensors": "b" * 64}


def _card(entry_id: str, lineage: dict, *, kind: str = "adapter", base: str | None = "smollm2-135m-instruct",
          method: str = "lora", task: str = "causal_lm") -> dict:  # fmt: skip
    """A card.json as the registry wrote it before the typed lineage (schema_version 1)."""
    return {"schema_version": 1, "id": entry_id, "kind": kind, "task": task, "base": base, "method": method,
            "created": "2026-11-30T10:00:00+00:00", "source": {"type": "tuning", "ref": f"runs/{entry_id}"},
            "weights": ADAPTER_SHA if kind == "adapter" else SHA, "tokenizer": ".", "chat_template": None,
            "metrics": {"train_loss_last": 1.2}, "lineage": lineage}  # fmt: skip


OLD_CARDS = {
    "old-lora": _card("old-lora", {
        "config": {"base": "smollm2-135m-instruct", "method": "lora", "lora": {"r": 8}, "train": {"max_length": 96}},
        "base_weights_sha256": SHA, "init_adapter": None, "init_adapter_weights_sha256": None,
        "data_sha256": "c" * 64, "data_rows": 16, "dropped_by_max_length": 0, "train_rows": 14, "eval_rows": 2,
        "label_names": None, "processes": 1}),
    "old-reward": _card("old-reward", {
        "config": {"base": "old-sft", "method": "reward", "reward": {"r": 4}, "train": {"max_length": 64}},
        "started_from": "old-sft", "started_from_method": "sft", "merged_adapter": "old-sft",
        "base_weights_sha256": SHA, "start_weights_sha256": ADAPTER_SHA, "data_sha256": "d" * 64,
        "train_pairs": 6, "eval_pairs": 2, "label_names": ["reward"], "frozen_layers": 0},
        method="reward", task="sequence_classification"),
    "old-dpo-full": _card("old-dpo-full", {
        "config": {"base": "smollm2-135m-instruct", "method": "dpo"}, "started_from": "smollm2-135m-instruct",
        "started_from_method": None, "merged_adapter": None, "base_weights_sha256": SHA,
        "start_weights_sha256": SHA, "train_pairs": 6, "reference": "a frozen copy of the start model"},
        kind="base", base=None, method="dpo"),
    "old-ppo": _card("old-ppo", {
        "policy_from": "old-sft", "base": "smollm2-135m-instruct", "base_weights_sha256": SHA,
        "reward_model": "old-reward", "reward_weights_sha256": ADAPTER_SHA, "config": {"method": "ppo"},
        "data_sha256": "e" * 64, "data_rows": 8, "train_prompts": 6, "eval_prompts": 2,
        "sft_lora_folded_in": True, "kl_final": 0.9}, method="ppo"),
    "old-merged": _card("old-merged", {
        "adapter": "old-classifier", "base": "minilm-l6", "adapter_weights_sha256": ADAPTER_SHA,
        "adapter_lineage": {"config": {"train": {"max_length": 64}}, "label_names": ["neg", "pos"],
                            "base_weights_sha256": SHA}},
        kind="base", base=None, method="merge", task="sequence_classification"),
}


def _home(tmp_path: Path) -> Registry:
    home = Registry(tmp_path / "home")
    for entry_id, card in OLD_CARDS.items():
        folder = home.entry_dir(entry_id)
        folder.mkdir(parents=True)
        (folder / CARD_FILE).write_text(json.dumps(card))
    return home


def test_cards_from_before_the_typed_lineage_load_with_their_start(tmp_path: Path) -> None:
    home = _home(tmp_path)
    lora = home.card("old-lora").lineage
    assert lora.data_sha256 == "c" * 64 and (lora.train_rows, lora.eval_rows) == (14, 2)
    assert lora.base_weights_sha256 == SHA and lora.max_length == 96 and lora.start is None
    assert lora.method_block("lora") == {"r": 8} and lora.processes == 1  # a stage's own fact stays, as an extra
    reward = home.card("old-reward").lineage
    assert reward.start == StartLineage(entry="old-sft", method="sft", base="smollm2-135m-instruct",
                                        folded_adapter="old-sft", weights_sha256=ADAPTER_SHA)  # fmt: skip
    assert reward.max_length == 64 and reward.label_names == ["reward"] and reward.train_pairs == 6
    full = home.card("old-dpo-full").lineage.start
    assert (full.entry, full.base, full.method, full.folded_adapter) == ("smollm2-135m-instruct",) * 2 + (None, None)
    ppo = home.card("old-ppo").lineage
    assert (ppo.start.entry, ppo.start.base, ppo.start.folded_adapter) == ("old-sft", "smollm2-135m-instruct", "old-sft")
    assert ppo.reward_model == "old-reward" and ppo.kl_final == 0.9
    merged = home.card("old-merged").lineage
    assert merged.merged_from == "old-classifier" and merged.merged_from_weights_sha256 == ADAPTER_SHA
    assert merged.trained.label_names == ["neg", "pos"] and merged.max_length == 64


def test_the_parent_of_each_entry_is_read_from_the_lineage(tmp_path: Path) -> None:
    """What the dashboard's lineage graph draws: a stage hangs under the entry it started from."""
    home = _home(tmp_path)
    parents = {entry_id: home.card(entry_id).lineage.parent() for entry_id in OLD_CARDS}
    assert parents == {"old-lora": None, "old-reward": "old-sft", "old-dpo-full": "smollm2-135m-instruct",
                       "old-ppo": "old-sft", "old-merged": "old-classifier"}  # fmt: skip
    assert Lineage(init_adapter="first-lora").parent() == "first-lora"


def test_a_card_rewritten_after_loading_keeps_the_new_layout_and_loads_the_same(tmp_path: Path) -> None:
    home = _home(tmp_path)
    card = home.update_card("old-reward", metrics={"train_loss_last": 1.0})
    written = json.loads((home.entry_dir("old-reward") / CARD_FILE).read_text())["lineage"]
    assert "started_from" not in written and written["start"]["entry"] == "old-sft"
    assert written["frozen_layers"] == 0  # extras are written back as they were
    assert ModelCard.model_validate(json.loads((home.entry_dir("old-reward") / CARD_FILE).read_text())) == card

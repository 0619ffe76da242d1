"""Packed (padding-free) batches: layout of the packed row, and which configs pack (no model loaded)."""

from __future__ import annotations

import pytest

from agentkit.errors import BadInputError
from agentkit.tuning import TuneConfig
from agentkit.tuning.packing import PackedCollator, can_pack
from agentkit.tuning.tokenize import IGNORE

BASE = {"base": "smollm2-135m-instruct", "data": {"train": "t.jsonl"}, "output": "x"}


def test_rows_are_laid_end_to_end_with_positions_restarting_and_first_labels_ignored() -> None:
    rows = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [IGNORE, 6, 7]},
        {"input_ids": [8, 9], "attention_mask": [1, 1], "labels": [8, 9]},  # a first label that is not IGNORE
    ]
    batch = PackedCollator()(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # Label 8 would be predicted from token 7 of the previous example: dropped, as padding drops it.
    assert batch["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, 9]]
    # No attention_mask (it would turn off transformers' packed-sequence masking), and no KV cache.
    assert "attention_mask" not in batch and batch["use_cache"] is False
    # The same boundaries in flash-attention's varlen names, for attention run per example.
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == [0, 3, 5]
    assert batch["max_length_q"] == batch["max_length_k"] == 3


def test_class_labels_are_refused_with_the_field_to_change() -> None:
    with pytest.raises(BadInputError, match="packing"):
        PackedCollator()([{"input_ids": [1, 2], "attention_mask": [1, 1], "labels": 1}])


@pytest.mark.parametrize(
    ("extra", "packs"),
    [
        ({"method": "lora"}, True),
        ({"method": "full"}, True),
        ({"method": "lora", "train": {"packing": False}}, False),
        # Virtual tokens go once in front of a row, so only the first packed example would get them.
        ({"method": "prefix_tuning"}, False),
        ({"method": "prompt_tuning"}, False),
        ({"method": "p_tuning"}, False),
        ({"method": "p_tuning_v2"}, False),
        ({"method": "lora", "task": "sequence_classification"}, False),
    ],
)
def test_which_configs_pack(extra: dict, packs: bool) -> None:
    assert can_pack(TuneConfig.model_validate({**BASE, **extra})) is packs

"""Preference data: the three layouts normalise to the same pairs, bad rows are named by row and
field, prompts for RL come from a preference file or a prompt file, and the data block of the
preference methods is validated by its own class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentkit.errors import BadInputError
from agentkit.tuning import TuneConfig
from agentkit.tuning.preference import (
    PreferenceDataConfig,
    PreferencePair,
    load_preference_split,
    load_preferences,
    load_prompts,
)

EXPECTED = [
    PreferencePair(prompt=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                           {"role": "user", "content": "Name a fruit."}],
                   chosen="An apple.", rejected="No.", row=1),
    PreferencePair(prompt=[{"role": "user", "content": "2 + 2?"}], chosen="4", rejected="5", row=2),
]  # fmt: skip


def _write(path: Path, rows: list) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def _sharegpt(tmp_path: Path) -> Path:
    return _write(tmp_path / "sg.json", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"},
                           {"from": "human", "value": "Name a fruit."}],
         "chosen": {"from": "gpt", "value": "An apple."}, "rejected": {"from": "gpt", "value": "No."}},
        {"conversations": [{"from": "human", "value": "2 + 2?"}], "chosen": "4", "rejected": "5"},
    ])  # fmt: skip


def _hh(tmp_path: Path) -> Path:
    head = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAssistant: "
    return _write(tmp_path / "hh.jsonl", [
        {"chosen": head + "An apple.", "rejected": head + "No."},
        {"chosen": "\n\nHuman: 2 + 2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2 + 2?\n\nAssistant: 5"},
    ])  # fmt: skip


def _openai(tmp_path: Path) -> Path:
    return _write(tmp_path / "oa.jsonl", [
        {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Name a fruit."}],
         "chosen": [{"role": "assistant", "content": "An apple."}],
         "rejected": [{"role": "assistant", "content": "No."}]},
        {"prompt": "2 + 2?", "chosen": {"role": "assistant", "content": "4"}, "rejected": "5"},
    ])  # fmt: skip


@pytest.mark.parametrize("make,fmt", [(_sharegpt, "sharegpt"), (_hh, "hh"), (_openai, "openai")])
def test_every_layout_normalises_to_the_same_pairs(tmp_path: Path, make, fmt: str) -> None:
    path = make(tmp_path)
    assert load_preferences(path) == EXPECTED  # auto-detected
    assert load_preferences(path, format=fmt) == EXPECTED
    assert load_preferences(path, limit=1) == EXPECTED[:1]


@pytest.mark.parametrize("row,match", [
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, r"row 2, field 'rejected': same text as chosen"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, r"row 2, field 'prompt': empty"),
    ({"prompt": [], "chosen": "a", "rejected": "b"}, r"row 2, field 'prompt': empty"),
    ({"prompt": "q", "chosen": "a"}, r"row 2, field 'rejected': missing"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, r"row 2, field 'chosen': expected text, got int"),
    ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}, r"row 2, field 'prompt\[0\]'"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, r"field 'chosen': expected one assistant"),
])  # fmt: skip
def test_bad_openai_rows_name_the_row_and_field(tmp_path: Path, row: dict, match: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(BadInputError, match=match):
        load_preferences(path)


def test_bad_sharegpt_and_hh_rows_name_the_row_and_field(tmp_path: Path) -> None:
    ok = {"conversations": [{"from": "human", "value": "q"}], "chosen": "a", "rejected": "b"}
    path = _write(
        tmp_path / "sg.json", [ok, {"conversations": [{"from": "human", "value": "q"}], "chosen": "a"}]
    )
    with pytest.raises(BadInputError, match=r"sg.json row 2, field 'rejected': missing"):
        load_preferences(path)
    path = _write(tmp_path / "sg2.json", [ok, {**ok, "conversations": [{"from": "alien", "value": "q"}]}])
    with pytest.raises(BadInputError, match=r"row 2, field 'conversations\[0\].from': unknown role 'alien'"):
        load_preferences(path)
    path = _write(tmp_path / "sg3.json", [{**ok, "conversations": [{"from": "human", "value": "  "}]}])
    with pytest.raises(BadInputError, match=r"row 1, field 'prompt': empty"):
        load_preferences(path)
    hh = "\n\nHuman: q\n\nAssistant: "
    path = _write(
        tmp_path / "hh.jsonl", [{"chosen": hh + "a", "rejected": "\n\nHuman: other\n\nAssistant: b"}]
    )
    with pytest.raises(
        BadInputError, match=r"row 1, field 'rejected': its dialogue before the last answer differs"
    ):
        load_preferences(path)
    path = _write(tmp_path / "hh2.jsonl", [{"chosen": hh + "a", "rejected": hh + "a"}])
    with pytest.raises(BadInputError, match=r"row 1, field 'rejected': same text as chosen"):
        load_preferences(path)
    path = _write(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(BadInputError, match=r"cannot tell the preference format.*set data.format"):
        load_preferences(path)
    with pytest.raises(BadInputError, match="no such file"):
        load_preferences(tmp_path / "absent.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{oops\n')
    with pytest.raises(BadInputError, match=r"broken.jsonl line 2: not valid JSON"):
        load_preferences(tmp_path / "broken.jsonl")


def test_prompts_for_rl_from_a_preference_file_or_a_prompt_file(tmp_path: Path) -> None:
    assert load_prompts(_hh(tmp_path)) == [p.prompt for p in EXPECTED]
    dup = _write(tmp_path / "dup.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                          {"prompt": "q", "chosen": "c", "rejected": "d"}])  # fmt: skip
    assert load_prompts(dup) == [[{"role": "user", "content": "q"}]]  # once per distinct prompt
    (tmp_path / "p.txt").write_text("first prompt\n\nsecond prompt\n")
    assert load_prompts(tmp_path / "p.txt") == [[{"role": "user", "content": "first prompt"}],
                                                [{"role": "user", "content": "second prompt"}]]  # fmt: skip
    rows = _write(tmp_path / "p.jsonl", [{"prompt": "plain"},
                                         {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}])  # fmt: skip
    assert load_prompts(rows) == [[{"role": "user", "content": "plain"}], [{"role": "user", "content": "u"}]]
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "fine"}, {"text": "no prompt"}])
    with pytest.raises(BadInputError, match=r"row 2, field 'prompt': missing or empty"):
        load_prompts(bad)


def test_split_holds_out_pairs_reproducibly(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "many.jsonl", [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(20)]
    )
    config = PreferenceDataConfig(train=str(path), eval_fraction=0.25, seed=3)
    train, held = load_preference_split(config)
    assert (len(train), len(held)) == (15, 5) and load_preference_split(config) == (train, held)
    assert {p.row for p in train} | {p.row for p in held} == set(range(1, 21))


def test_preference_methods_read_their_own_data_block() -> None:
    base = {"base": "smollm2-135m-instruct", "output": "x"}
    config = TuneConfig.model_validate(
        {**base, "method": "reward", "data": {"train": "p.jsonl", "format": "hh"}}
    )
    assert isinstance(config.data, PreferenceDataConfig) and config.to_yaml_dict()["data"]["format"] == "hh"
    with pytest.raises(ValidationError, match=r"field 'data.format'.*allowed in data for dpo"):
        TuneConfig.model_validate({**base, "method": "dpo", "data": {"train": "p.jsonl", "format": "alpaca"}})
    with pytest.raises(ValidationError, match=r"field 'data.fields'"):
        TuneConfig.model_validate({**base, "method": "dpo", "data": {"train": "p.jsonl", "fields": {}}})
    with pytest.raises(ValidationError, match=r"reward.r applies to peft: lora only"):
        TuneConfig.model_validate({**base, "method": "reward", "reward": {"peft": "full", "r": 4},
                                   "data": {"train": "p.jsonl"}})  # fmt: skip
    with pytest.raises(ValidationError, match=r"reward.lora applies to peft: lora only"):
        TuneConfig.model_validate({**base, "method": "reward", "reward": {"peft": "full", "lora": {"r": 4}},
                                   "data": {"train": "p.jsonl"}})  # fmt: skip
    # Chat SFT keeps the SFT data block.
    sft = TuneConfig.model_validate(
        {**base, "method": "sft", "data": {"train": "t.jsonl", "format": "alpaca"}}
    )
    assert not isinstance(sft.data, PreferenceDataConfig)

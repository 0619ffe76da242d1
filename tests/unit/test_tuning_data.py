"""agentkit.tuning.data: every format and file type normalises alike; bad rows name file, row, field."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentkit.errors import BadInputError
from agentkit.tuning.data import (
    ChatExample,
    DataConfig,
    LabelExample,
    load_dataset,
    read_records,
)

ALPACA = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Translate.", "input": "bonjour", "output": "hello", "system": "Be brief."},
]


def write_jsonl(path: Path, records: list, blank_after: int | None = None) -> Path:
    lines = [json.dumps(r) for r in records]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_table(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def load(path: Path, **kwargs) -> object:
    return load_dataset(DataConfig(train=str(path), eval_fraction=0, **kwargs))


def bad(path: Path, row: str, field: str, *, contains: str = "", **kwargs) -> BadInputError:
    """Load must fail with one line that names the file, the row and the field, plus a fix."""
    with pytest.raises(BadInputError) as info:
        load(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and row in message and repr(field) in message, message
    assert contains in message, message
    assert info.value.fix and "\n" not in message
    return info.value


# ---------------------------------------------------------------- formats


def test_alpaca_jsonl_messages(tmp_path: Path) -> None:
    ds = load(write_jsonl(tmp_path / "a.jsonl", ALPACA))
    assert ds.train == [
        ChatExample([{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}]),
        ChatExample([{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Translate.\n\nbonjour"},
                     {"role": "assistant", "content": "hello"}]),
    ]
    assert ds.eval == [] and ds.rows == 2 and ds.label_names is None


def test_sharegpt_jsonl(tmp_path: Path) -> None:
    convo = [{"from": "system", "value": "S"}, {"from": "human", "value": "hi"},
             {"from": "gpt", "value": "hello"}, {"from": "user", "value": "bye"},
             {"from": "assistant", "value": "ciao"}]
    empty_system = [{"from": "system", "value": ""}, {"from": "human", "value": "q"},
                    {"from": "gpt", "value": "a"}]
    ds = load(write_jsonl(tmp_path / "s.jsonl", [{"conversations": convo}, {"conversations": empty_system}]),
              format="sharegpt")
    assert [m["role"] for m in ds.train[0].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert ds.train[0].messages[2]["content"] == "hello"
    assert ds.train[1].messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_openai_jsonl(tmp_path: Path) -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"}]
    ds = load(write_jsonl(tmp_path / "o.jsonl", [{"messages": msgs}]), format="openai")
    assert ds.train == [ChatExample(msgs)]


def test_text_label_jsonl_int_labels_sort_numerically(tmp_path: Path) -> None:
    records = [{"text": f"t{i}", "label": i} for i in (2, 10, 0, 1)]
    ds = load(write_jsonl(tmp_path / "l.jsonl", records), format="text_label")
    assert ds.label_names == ["0", "1", "2", "10"]  # a string sort would give 10 the id 2
    assert [e.label for e in ds.train] == [2, 3, 0, 1]


def test_text_label_string_labels_and_label_names(tmp_path: Path) -> None:
    rows = [["good", "pos"], ["bad", "neg "], ["meh", "neu"]]
    path = write_table(tmp_path / "l.csv", ["text", "label"], rows)
    ds = load(path, format="text_label")
    assert ds.label_names == ["neg", "neu", "pos"]
    assert ds.train == [LabelExample("good", 2), LabelExample("bad", 0), LabelExample("meh", 1)]
    fixed = load(path, format="text_label", label_names=["pos", "neg", "neu"])
    assert fixed.label_names == ["pos", "neg", "neu"]
    assert [e.label for e in fixed.train] == [0, 1, 2]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".json-data"])
def test_alpaca_from_csv_tsv_json(tmp_path: Path, suffix: str) -> None:
    header = ["instruction", "input", "output", "system"]
    rows = [[r.get(k, "") for k in header] for r in ALPACA]
    if suffix == ".csv":
        path = write_table(tmp_path / "a.csv", header, rows)
    elif suffix == ".tsv":
        path = write_table(tmp_path / "a.tsv", header, rows, delimiter="\t")
    else:
        path = tmp_path / "a.json"
        path.write_text(json.dumps(ALPACA if suffix == ".json" else {"data": ALPACA}), encoding="utf-8")
    assert load(path).train == load(write_jsonl(tmp_path / "a.jsonl", ALPACA)).train


def test_field_mapping(tmp_path: Path) -> None:
    path = write_table(tmp_path / "m.csv", ["prompt", "context", "answer"], [["Q?", "ctx", "A."]])
    ds = load(path, fields={"instruction": "prompt", "input": "context", "output": "answer"})
    assert ds.train[0].messages == [{"role": "user", "content": "Q?\n\nctx"},
                                    {"role": "assistant", "content": "A."}]


def test_sharegpt_json_string_column_in_csv(tmp_path: Path) -> None:
    convo = [{"from": "human", "value": "hi, there"}, {"from": "gpt", "value": "line1\nline2"}]
    path = write_table(tmp_path / "s.csv", ["id", "conversations"], [["1", json.dumps(convo)]])
    ds = load(path, format="sharegpt")
    assert ds.train[0].messages[1] == {"role": "assistant", "content": "line1\nline2"}


def test_read_records_skips_blank_jsonl_lines(tmp_path: Path) -> None:
    assert read_records(write_jsonl(tmp_path / "a.jsonl", ALPACA, blank_after=1)) == ALPACA


# ---------------------------------------------------------------- split, max_rows, hashing


def test_split_sizes_and_determinism(tmp_path: Path) -> None:
    records = [{"text": f"t{i}", "label": "x"} for i in range(20)]
    path = write_jsonl(tmp_path / "l.jsonl", records)

    def split(seed: int, fraction: float = 0.1) -> tuple[list[str], list[str]]:
        ds = load_dataset(DataConfig(train=str(path), format="text_label", eval_fraction=fraction, seed=seed))
        return [e.text for e in ds.train], [e.text for e in ds.eval]

    train, held = split(0)
    assert len(held) == 2 and len(train) == 18 and split(0) == (train, held)
    assert sorted(train + held) == sorted(r["text"] for r in records)
    assert train == [r["text"] for r in records if r["text"] not in held]  # file order kept
    assert any(split(seed)[1] != held for seed in range(1, 5))
    assert len(split(0, 0.25)[1]) == 5
    assert split(0, 0.0)[1] == []


def test_split_keeps_one_eval_row_and_one_train_row(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    small = load_dataset(DataConfig(train=str(path), eval_fraction=0.01))
    large = load_dataset(DataConfig(train=str(path), eval_fraction=0.9))
    assert (len(small.train), len(small.eval)) == (1, 1) == (len(large.train), len(large.eval))


def test_max_rows_and_separate_eval_file(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", ALPACA * 3)
    held = write_jsonl(tmp_path / "e.jsonl", ALPACA)
    ds = load_dataset(DataConfig(train=str(train), eval=str(held), max_rows=4))
    assert ds.rows == 4 and len(ds.train) == 4 and len(ds.eval) == 2


def test_sha256_is_stable_and_covers_eval(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", ALPACA)
    held = write_jsonl(tmp_path / "e.jsonl", ALPACA[:1])
    t_sha = hashlib.sha256(train.read_bytes()).hexdigest()
    e_sha = hashlib.sha256(held.read_bytes()).hexdigest()
    assert load(train).source_sha256 == t_sha == load(train, max_rows=1).source_sha256
    assert load_dataset(DataConfig(train=str(train), eval=str(held))).source_sha256 == f"{t_sha}:{e_sha}"


# ---------------------------------------------------------------- errors


def test_unsupported_suffix_names_allowed_ones(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    path.write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"'\.parquet'.*\.json, \.jsonl, \.csv, \.tsv"):
        read_records(path)


def test_missing_file_names_config_field(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"nope\.jsonl: no such file.*`train:`"):
        load(tmp_path / "nope.jsonl")


def test_malformed_jsonl_line_names_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n\n{broken\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"a\.jsonl line 3: not valid JSON"):
        read_records(path)


def test_malformed_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n{"instruction": "x",\n}\n]', encoding="utf-8")
    with pytest.raises(BadInputError, match=r"a\.json line 3: not valid JSON"):
        read_records(path)


def test_missing_required_field_lists_columns_and_fields_mapping(tmp_path: Path) -> None:
    path = write_table(tmp_path / "a.csv", ["prompt", "output"], [["Q", "A"]])
    err = bad(path, "line 2", "instruction", contains="'prompt', 'output'")
    assert "fields: {instruction:" in err.fix


def test_missing_mapped_field_says_it_was_mapped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Q", "output": "A"}, {"output": "A"}])
    bad(path, "line 2", "prompt", contains="mapped to 'instruction'", fields={"instruction": "prompt"})


def test_mapped_column_absent_everywhere_is_a_typo(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    bad(path, "line 1", "contxt", contains="no row has this column", fields={"input": "contxt"})


def test_empty_required_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA[0], {"instruction": "Q", "output": "  "}])
    bad(path, "line 2", "output", contains="is empty")


def test_empty_json_list_has_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"a\.json: the file holds 0 rows"):
        load(path)


def test_header_only_csv_has_zero_rows(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"a\.csv: the file holds 0 rows"):
        load(write_table(tmp_path / "a.csv", ["instruction", "output"], []))


def test_csv_row_with_extra_cells(tmp_path: Path) -> None:
    path = write_table(tmp_path / "a.csv", ["instruction", "output"], [["Q", "A"], ["Q", "A", "oops"]])
    bad(path, "line 3", "(column 3)", contains="3 cells")


def test_sharegpt_row_without_assistant_turn(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "hi"}]}])
    bad(path, "line 1", "conversations", contains="no assistant turn", format="sharegpt")


def test_openai_row_without_assistant_turn(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "o.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    bad(path, "line 1", "messages", contains="no assistant turn", format="openai")


def test_sharegpt_unknown_speaker(tmp_path: Path) -> None:
    convo = [{"from": "human", "value": "hi"}, {"from": "bot", "value": "yo"}]
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": convo}])
    bad(path, "line 1", "conversations[1].from", contains="'bot'", format="sharegpt")


def test_openai_tool_turn_without_a_call(tmp_path: Path) -> None:
    # Tool turns are supported (tests/unit/test_tuning_toolcalls.py); a result with no call is not.
    msgs = [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"},
            {"role": "assistant", "content": "ok"}]
    path = write_jsonl(tmp_path / "o.jsonl", [{"messages": msgs}])
    bad(path, "line 1", "messages[1].content", contains="no tool call before it", format="openai")


def test_invalid_json_string_in_csv_column(tmp_path: Path) -> None:
    path = write_table(tmp_path / "s.csv", ["conversations"], [['[{"from": "human"']])
    bad(path, "line 2", "conversations", contains="not valid JSON", format="sharegpt")


def test_label_not_in_label_names(tmp_path: Path) -> None:
    path = write_table(tmp_path / "l.csv", ["text", "label"], [["a", "pos"], ["b", "maybe"]])
    bad(path, "line 3", "label", contains="'maybe'", format="text_label", label_names=["neg", "pos"])


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("fraction", [-0.1, 1.0, float("nan")])
def test_eval_fraction_out_of_range(fraction: float) -> None:
    with pytest.raises(ValidationError, match="eval_fraction must be >= 0 and < 1"):
        DataConfig(train="t.jsonl", eval_fraction=fraction)


def test_config_rejects_typos_and_foreign_fields() -> None:
    with pytest.raises(ValidationError, match="eval_fracton"):
        DataConfig(train="t.jsonl", eval_fracton=0.2)
    with pytest.raises(ValidationError, match="instrucion"):
        DataConfig(train="t.jsonl", fields={"instrucion": "prompt"})
    with pytest.raises(ValidationError, match="text_label"):
        DataConfig(train="t.jsonl", label_names=["a"])

"""Training data for `agentkit.tuning`: reads local .json/.jsonl/.csv/.tsv files and normalises them
into chat examples (SFT) or text/label examples (classification), with a seeded train/eval split."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentkit.config_io import decode_utf8
from agentkit.errors import BadInputError

SUFFIXES = (".json", ".jsonl", ".csv", ".tsv")

# Canonical field names per format: (required, optional). `fields:` may only map these.
FORMAT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "alpaca": (("instruction", "output"), ("input", "system")),
    "sharegpt": (("conversations",), ("tools",)),
    "openai": (("messages",), ("tools",)),
    "text_label": (("text", "label"), ()),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
CHAT_ROLES = ("system", "user", "assistant")
TOOL_ROLES = ("tool", "function", "ipython")
TOOL_SPEAKERS = ("function_call", "observation")  # sharegpt tool turns (LLaMA-Factory names)


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: str = Field(description='Training file: .json (a list, or {"data": [...]}), .jsonl, .csv or .tsv.')
    eval: str | None = Field(None, description="Separate eval file; when set, eval_fraction is not used.")
    format: Literal["alpaca", "sharegpt", "openai", "text_label"] = Field(
        "alpaca", description="Row layout: alpaca, sharegpt, openai (chat SFT) or text_label (classifier).")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Canonical field -> your column, e.g. {instruction: prompt}.")
    eval_fraction: float = Field(
        0.1, description="Share of train rows held out for eval when `eval` is not set; 0 <= x < 1.")
    max_rows: int | None = Field(
        None, ge=1, description="Keep only the first N rows of each file, for quick runs.")
    seed: int = Field(0, description="Seed for the train/eval shuffle.")
    label_names: list[str] | None = Field(
        None, description="text_label only: label order (id = position). Default: sorted distinct labels.")

    @field_validator("eval_fraction")
    @classmethod
    def _fraction_in_range(cls, value: float) -> float:
        if not 0 <= value < 1:  # also rejects NaN
            raise ValueError(f"eval_fraction must be >= 0 and < 1, got {value}; "
                             "use e.g. 0.1, or 0 to train on every row with no eval set")
        return value

    @field_validator("label_names")
    @classmethod
    def _labels_distinct(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            if not names or any(not n.strip() for n in names):
                raise ValueError("label_names must be a non-empty list of non-empty names, or left out")
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"label_names lists {dupes} more than once; each label needs one id")
        return names

    @model_validator(mode="after")
    def _fields_fit_format(self) -> DataConfig:
        required, optional = FORMAT_FIELDS[self.format]
        unknown = sorted(set(self.fields) - set(required + optional))
        if unknown:
            raise ValueError(f"fields maps {unknown}, which format {self.format!r} does not use; "
                             f"the keys must be among {list(required + optional)} (values are your columns)")
        if self.label_names is not None and self.format != "text_label":
            raise ValueError(f"label_names applies to format 'text_label' only, not {self.format!r}; "
                             "remove it")
        return self


@dataclass
class ChatExample:
    messages: list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": str}, ...]


@dataclass
class LabelExample:
    text: str
    label: int


@dataclass
class Dataset:
    train: list[ChatExample] | list[LabelExample]
    eval: list[ChatExample] | list[LabelExample]
    label_names: list[str] | None  # text_label only; label id = index
    source_sha256: str  # train file's sha256, or "train_sha:eval_sha" when an eval file is given
    rows: int  # rows read from the train file, after max_rows, before the split


# ---------------------------------------------------------------- reading files


def read_records(path: str | Path) -> list[dict]:
    """The file's records as dicts (CSV/TSV cells stay strings)."""
    return [record for _, record in _read_rows(path)[0]]


def _read_rows(path: str | Path, config_field: str | None = None) -> tuple[list[tuple[str, dict]], str]:
    """Records paired with where they sit ("line 4" / "record 3"), plus the sha256 of the bytes parsed."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInputError(f"{path}: unsupported file type {p.suffix or '(no suffix)'!r}.",
                            fix=f"convert it to one of {', '.join(SUFFIXES)}.")
    if not p.is_file():
        where = f"`{config_field}:` in the data config" if config_field else "the path"
        raise BadInputError(f"{path}: no such file.", fix=f"point {where} at an existing {suffix} file.")
    raw = p.read_bytes()  # hash and parse the same bytes, so the hash describes what was trained on
    text = decode_utf8(path, raw, encoding="utf-8-sig")  # -sig: Excel writes a BOM before the header
    if suffix == ".jsonl":
        rows = _jsonl_rows(path, text)
    elif suffix == ".json":
        rows = _json_rows(path, text)
    else:
        rows = _csv_rows(path, text, "\t" if suffix == ".tsv" else ",")
    if not rows:
        raise BadInputError(f"{path}: the file holds 0 rows.",
                            fix="add at least one record, or point the data config at the right file.")
    return rows, hashlib.sha256(raw).hexdigest()


def _jsonl_rows(path: str | Path, text: str) -> list[tuple[str, dict]]:
    from agentkit.config_io import json_lines

    return [(f"line {number}", record) for number, record in json_lines(path, text)]


def _json_rows(path: str | Path, text: str) -> list[tuple[str, dict]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path} line {e.lineno}: not valid JSON ({e.msg} at column {e.colno}).",
                            fix="fix the JSON there (or use .jsonl, one object per line).") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise BadInputError(f"{path}: expected a JSON list of objects or {{\"data\": [...]}}, "
                            f"got {type(data).__name__}.", fix="wrap the records in a top-level list.")
    return [(f"record {i}", _as_object(path, f"record {i}", r)) for i, r in enumerate(data, 1)]


def _as_object(path: str | Path, where: str, record: object) -> dict:
    if not isinstance(record, dict):
        raise BadInputError(f"{path} {where}: expected an object with named fields, "
                            f"got {type(record).__name__}.", fix="make every record a JSON object.")
    return record


def _csv_rows(path: str | Path, text: str, delimiter: str) -> list[tuple[str, dict]]:
    # A sharegpt conversation in one cell easily passes csv's 128 KiB default cell limit;
    # raise it for this read only (the limit is module-global).
    old_limit = csv.field_size_limit(sys.maxsize)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = [name.strip() for name in next(reader, [])]
        for name in header:
            if header.count(name) > 1:
                raise BadInputError(f"{path} line 1, field {name!r}: the header names this column twice.",
                                    fix="give every column a distinct name.")
        rows, end = [], reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num  # a quoted cell may span lines: name the first
            if not cells:
                continue
            if len(cells) > len(header):
                raise BadInputError(
                    f"{path} line {start}, field '(column {len(header) + 1})': {len(cells)} cells "
                    f"but the header has {len(header)}.",
                    fix="quote cells that contain the delimiter, or add the column to the header.")
            rows.append((f"line {start}", dict(zip(header, cells))))  # short rows: cells go missing
        return rows
    except csv.Error as e:
        raise BadInputError(f"{path} line {reader.line_num}: malformed {delimiter!r}-separated text ({e}).",
                            fix="fix the quoting on that line, or convert the file to .jsonl.") from None
    finally:
        csv.field_size_limit(old_limit)


# ---------------------------------------------------------------- one row -> one example


@dataclass
class _Row:
    path: str
    where: str  # "line 4" / "record 3": what the user finds in an editor
    record: dict
    fields: dict[str, str]  # canonical -> column

    def fail(self, field: str, problem: str, fix: str) -> NoReturn:
        raise BadInputError(f"{self.path} {self.where}, field {field!r}: {problem}.", fix=fix)

    def column(self, name: str) -> str:
        return self.fields.get(name, name)

    def get(self, name: str, required: bool) -> object:
        column = self.column(name)
        if column in self.record and self.record[column] is not None:
            return self.record[column]
        if not required:
            return None
        if column in self.record:
            self.fail(column, "is null", "fill it in, or drop the row.")
        have = ", ".join(repr(k) for k in list(self.record)[:12]) or "none"
        mapped = f" (mapped to {name!r} by fields:)" if column != name else ""
        self.fail(column, f"required field missing{mapped}; the row's columns are {have}",
                  f"add a {column!r} column to every row, or map an existing column in the data config: "
                  f"fields: {{{name}: <your column>}}.")

    def text(self, name: str, required: bool) -> str | None:
        value = self.get(name, required)
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # e.g. a numeric answer in JSON
        if not isinstance(value, str):
            self.fail(self.column(name), f"must be text, got {type(value).__name__}", "write it as a string.")
        if required and not value.strip():
            self.fail(self.column(name), "is empty", "fill it in, or drop the row.")
        return value

    def json_cell(self, field: str, value: Any, fix: str) -> Any:
        """`value` parsed when it is a string (CSV/TSV cells and some JSON exports hold JSON as text);
        anything else as it is. Invalid JSON fails naming `field`, with `fix`."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            self.fail(field, f"is not valid JSON ({e.msg} at char {e.pos})", fix)

    def turns(self, name: str) -> list:
        """A JSON list of turns; CSV/TSV cells (and some JSON exports) hold it as a JSON string."""
        column = self.column(name)
        value = self.json_cell(column, self.get(name, True),
                               'write it as a JSON list, e.g. [{"from": "human", "value": "hi"}, ...].')  # fmt: skip
        if not isinstance(value, list) or not value:
            self.fail(column, f"must be a non-empty list of turns, got {type(value).__name__}",
                      "give every row a list of turn objects.")
        return value


def _message(row: _Row, field: str, role: str, content: object) -> dict[str, str] | None:
    if not isinstance(content, str):
        row.fail(field, f"must be a string, got {type(content).__name__}",
                 "give each turn plain-text content (multimodal parts are not supported).")
    if not content.strip():
        if role == "system":
            return None  # exports often carry an empty system turn; it teaches nothing
        row.fail(field, f"{role} turn is empty", "fill it in, or drop the turn.")
    return {"role": role, "content": content}


def _chat(row: _Row, messages: list[dict[str, str] | None], column: str) -> ChatExample:
    kept = [m for m in messages if m is not None]
    if not any(m["role"] == "assistant" for m in kept):
        row.fail(column, "no assistant turn, so there is nothing to learn from this row",
                 "add an assistant reply, or drop the row.")
    return ChatExample(messages=kept)


def _alpaca(row: _Row) -> ChatExample:
    instruction, output = row.text("instruction", True), row.text("output", True)
    extra, system = row.text("input", False), row.text("system", False)
    user = instruction + (f"\n\n{extra}" if extra and extra.strip() else "")
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    return ChatExample(messages=[*messages, {"role": "user", "content": user},
                                 {"role": "assistant", "content": output}])


def _tool_chat(row: _Row, column: str, turns: list, sharegpt: bool) -> ChatExample | None:
    """Rows with tools or tool turns, rendered by the inference renderer (see tool_turns.py)."""
    from agentkit.tuning import tool_turns

    tools = tool_turns.row_tools(row)
    has_turns = any(isinstance(t, dict) and (t.get("from") in TOOL_SPEAKERS or t.get("role") in TOOL_ROLES
                                             or t.get("tool_calls") or t.get("function_call")) for t in turns)
    if not tools and not has_turns:
        return None  # a plain chat row: the path below, unchanged
    messages = (tool_turns.sharegpt_messages(row, turns, tools, SHAREGPT_ROLES) if sharegpt
                else tool_turns.openai_messages(row, turns, tools))
    return _chat(row, tool_turns.render(messages, tools), column)


def _sharegpt(row: _Row) -> ChatExample:
    column, messages = row.column("conversations"), []
    turns = row.turns("conversations")
    if (example := _tool_chat(row, column, turns, sharegpt=True)) is not None:
        return example
    for i, turn in enumerate(turns):
        field = f"{column}[{i}]"
        if not isinstance(turn, dict):
            row.fail(field, "must be an object", 'write turns as {"from": "human", "value": "..."}.')
        who = turn.get("from")
        if not isinstance(who, str) or who not in SHAREGPT_ROLES:
            row.fail(f"{field}.from", f"unknown speaker {who!r}",
                     f"use one of {', '.join(SHAREGPT_ROLES)} (or convert the row to format openai).")
        messages.append(_message(row, f"{field}.value", SHAREGPT_ROLES[who], turn.get("value")))
    return _chat(row, messages, column)


def _openai(row: _Row) -> ChatExample:
    column, messages = row.column("messages"), []
    turns = row.turns("messages")
    if (example := _tool_chat(row, column, turns, sharegpt=False)) is not None:
        return example
    for i, turn in enumerate(turns):
        field = f"{column}[{i}]"
        if not isinstance(turn, dict):
            row.fail(field, "must be an object", 'write turns as {"role": "user", "content": "..."}.')
        role = turn.get("role")
        if role not in CHAT_ROLES:
            row.fail(f"{field}.role", f"unknown role {role!r}", f"use one of {', '.join(CHAT_ROLES)}.")
        messages.append(_message(row, f"{field}.content", role, turn.get("content")))
    return _chat(row, messages, column)


_CHAT_FORMATS = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai}


def _raw_label(row: _Row) -> tuple[str, str]:
    text, label = row.text("text", True), row.get("label", True)
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        row.fail(row.column("label"), f"must be an integer or a string, got {label!r}",
                 "write labels as integers or strings.")
    name = str(label).strip()  # "pos " must not become a class of its own
    if not name:
        row.fail(row.column("label"), "is empty", "fill it in, or drop the row.")
    return text, name


def _sorted_labels(names: set[str]) -> list[str]:
    # Integer labels sort numerically so "0".."10" keep their ids (a string sort puts "10" before "2").
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


# ---------------------------------------------------------------- the dataset


def load_dataset(config: DataConfig) -> Dataset:
    """Read, validate and normalise `config.train` (and `config.eval`), then split if no eval file."""
    files = [("train", config.train)] + ([("eval", config.eval)] if config.eval is not None else [])
    parts, hashes = [], []
    for config_field, path in files:
        located, sha = _read_rows(path, config_field)
        rows = [_Row(str(path), where, rec, config.fields) for where, rec in located[: config.max_rows]]
        _check_mapped_columns(rows, config.fields)
        parts.append(rows)
        hashes.append(sha)
    train_rows, eval_rows = parts[0], (parts[1] if len(parts) > 1 else [])

    label_names = None
    if config.format == "text_label":
        train_raw = [(row, *_raw_label(row)) for row in train_rows]
        eval_raw = [(row, *_raw_label(row)) for row in eval_rows]
        label_names = config.label_names or _sorted_labels({name for _, _, name in train_raw + eval_raw})
        ids = {name: i for i, name in enumerate(label_names)}

        def labelled(raw: list[tuple[_Row, str, str]]) -> list[LabelExample]:
            out = []
            for row, text, name in raw:
                if name not in ids:
                    row.fail(row.column("label"), f"label {name!r} is not in label_names {label_names}",
                             "add it to label_names in the data config, or fix the row.")
                out.append(LabelExample(text=text, label=ids[name]))
            return out

        train, held = labelled(train_raw), labelled(eval_raw)
    else:
        convert = _CHAT_FORMATS[config.format]
        train, held = [convert(r) for r in train_rows], [convert(r) for r in eval_rows]

    if config.eval is None:
        train, held = _split(train, config.eval_fraction, config.seed)
    return Dataset(train=train, eval=held, label_names=label_names,
                   source_sha256=":".join(hashes), rows=len(train_rows))


def _check_mapped_columns(rows: list[_Row], fields: dict[str, str]) -> None:
    """A mapped column that no row has is a typo, even for optional fields (else `input` is silently lost)."""
    for name, column in fields.items():
        if rows and not any(column in row.record for row in rows):
            rows[0].fail(column, f"mapped to {name!r} by fields:, but no row has this column",
                         f"fix the column name in fields: {{{name}: ...}} of the data config.")


def _split(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Hold out round(n * fraction) rows, at least 1 when n >= 2 and at most n - 1; both keep file order."""
    n = len(items)
    if fraction == 0 or n < 2:
        return items, []
    k = min(max(round(n * fraction), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]

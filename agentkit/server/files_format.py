"""What an uploaded fine-tuning file holds: OpenAI chat rows (`{"messages": [...]}`, for supervised
jobs) or OpenAI preference rows (`{"input", "preferred_output", "non_preferred_output"}`, for dpo),
checked line by line by the readers `agentkit tune` trains with, and rewritten for the dpo stage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from agentkit.config_io import decode_utf8, json_lines
from agentkit.errors import BadInputError


class RowFormat(str, Enum):
    """Persisted with each file: which job method can train on it."""

    CHAT = "chat"  # method supervised
    PREFERENCE = "preference"  # method dpo

    @property
    def method(self) -> str:
        return "supervised" if self is RowFormat.CHAT else "dpo"

    @property
    def layout(self) -> str:
        if self is RowFormat.CHAT:
            return '{"messages": [...]}'
        return '{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}'


@dataclass(frozen=True)
class Inspected:
    format: RowFormat
    rows: int


def inspect_file(path: Path, name: str) -> Inspected:
    """The format and row count of the JSONL file at `path` (shown to the client as `name`), or
    BadInputError naming the first bad row by its 1-based line and its field."""
    rows = _json_lines(path, name)
    if not rows:
        raise BadInputError(f"{name}: the file holds no rows.", fix="upload JSONL with one training example a line.")
    first = _format_of(name, *rows[0])
    for number, record in rows[1:]:
        if (kind := _format_of(name, number, record)) is not first:
            _fail(name, number, None, f"a {kind.value} row in a file whose first row is a {first.value} row",
                  f"keep one layout in a file: {first.layout}.")  # fmt: skip
    if first is RowFormat.CHAT:
        _check_chat(path, name)
    else:
        _check_preferences(path, name, rows)
    return Inspected(first, len(rows))


def write_dpo_rows(source: Path, target: Path) -> None:
    """An uploaded (already checked) preference file as the `openai` preference layout that the dpo
    stage reads (`data.format: openai`): prompt messages, one-message chosen / rejected."""
    rows = _json_lines(source, source.name)
    target.write_text("".join(json.dumps(_dpo_row(source.name, n, r), ensure_ascii=False) + "\n" for n, r in rows),
                      encoding="utf-8")  # fmt: skip


# ---- reading --------------------------------------------------------------------------------------
def _json_lines(path: Path, name: str) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for every non-blank line."""
    return json_lines(name, decode_utf8(name, path.read_bytes(), encoding="utf-8-sig"))


def _format_of(name: str, number: int, record: dict[str, Any]) -> RowFormat:
    if "messages" in record:
        return RowFormat.CHAT
    if {"input", "preferred_output", "non_preferred_output"} & set(record):
        return RowFormat.PREFERENCE
    have = ", ".join(map(repr, list(record)[:8])) or "none"
    _fail(name, number, "messages", f"missing; the row's fields are {have}",
          f"write chat rows as {RowFormat.CHAT.layout}, or preference rows as {RowFormat.PREFERENCE.layout}.")  # fmt: skip


def _fail(name: str, number: int, field: str | None, problem: str, fix: str) -> NoReturn:
    where = f"{name} line {number}" + (f", field {field!r}" if field else "")
    raise BadInputError(f"{where}: {problem}.", fix=fix)


# ---- chat rows: the supervised reader itself --------------------------------------------------------
def _check_chat(path: Path, name: str) -> None:
    # The reader `agentkit tune` uses for `data.format: openai` (tools and tool turns included), so a
    # file accepted here is one the job can train on; its errors name "<path> line N, field 'x'".
    from agentkit.tuning.data import DataConfig, load_dataset

    try:
        load_dataset(DataConfig(train=str(path), format="openai", eval_fraction=0))
    except BadInputError as exc:
        raise BadInputError(exc.message.replace(str(path), name), fix=exc.fix) from None


# ---- preference rows: OpenAI's envelope here, the pair checks in tuning/preference.py -----------------
def _dpo_row(name: str, number: int, record: dict[str, Any]) -> dict[str, Any]:
    given = record.get("input")
    if not isinstance(given, dict):
        _fail(name, number, "input", f"must be an object with `messages`, got {type(given).__name__}",
              'write it as {"messages": [{"role": "user", "content": "..."}]}.')  # fmt: skip
    unknown = sorted(set(given) - {"messages", "tools", "parallel_tool_calls"})
    if unknown:
        _fail(name, number, f"input.{unknown[0]}", "is not a field of a preference row's input", "remove it.")
    if given.get("tools"):
        _fail(name, number, "input.tools", "tools in preference rows are not supported: the dpo stage trains "
              "on plain answers", "drop `tools` from the row, or train tool calls with method supervised.")  # fmt: skip
    messages = given.get("messages")
    if not isinstance(messages, list) or not messages:
        _fail(name, number, "input.messages", "must be a non-empty list of messages", "give the prompt as chat messages.")
    answers = []
    for field in ("preferred_output", "non_preferred_output"):
        value = record.get(field)
        if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
                and value[0].get("role") == "assistant"):  # fmt: skip
            _fail(name, number, field, "must be a list of one assistant message",
                  'write it as [{"role": "assistant", "content": "..."}].')  # fmt: skip
        answers.append([{"role": "assistant", "content": value[0].get("content")}])
    return {"prompt": messages, "chosen": answers[0], "rejected": answers[1]}


# tuning/preference.py names the fields of its own layout; the client wrote OpenAI's.
_FIELDS = (("prompt", "input.messages"), ("chosen", "preferred_output[0]"), ("rejected", "non_preferred_output[0]"))


def _openai_field(field: str) -> str:
    for ours, theirs in _FIELDS:
        if field == ours or field.startswith((f"{ours}.", f"{ours}[")):
            return theirs + field[len(ours):]
    return field


def _check_preferences(path: Path, name: str, rows: list[tuple[int, dict[str, Any]]]) -> None:
    from agentkit.tuning.preference import load_preferences

    converted = path.with_name(f"{path.stem}.dpo.jsonl")
    try:
        converted.write_text("".join(json.dumps(_dpo_row(name, n, r)) + "\n" for n, r in rows), encoding="utf-8")
        load_preferences(converted, format="openai")
    except BadInputError as exc:
        # "<converted> row K, field 'chosen.content': ..." -> "<name> line N, field 'preferred_output[0].content': ..."
        found = re.match(rf"{re.escape(str(converted))} row (\d+)(?:, field '([^']*)')?: (.*)", exc.message, re.S)
        if found is None:
            raise BadInputError(exc.message.replace(str(converted), name), fix=exc.fix) from None
        row, field, problem = int(found[1]), found[2], found[3].rstrip(".")
        _fail(name, rows[row - 1][0], _openai_field(field) if field else None, problem, exc.fix or "fix or drop the row.")
    finally:
        converted.unlink(missing_ok=True)

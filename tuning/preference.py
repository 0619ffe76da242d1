"""Preference data for the RLHF stages: chosen / rejected pairs in sharegpt, HH-RLHF or OpenAI
layout normalised to `PreferencePair` (chat prompt + two answers), and prompt lists for RL."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentkit.config_io import read_text
from agentkit.errors import BadInputError

FORMATS = ("auto", "sharegpt", "hh", "openai")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}  # fmt: skip
# HH-RLHF dialogues: "\n\nHuman: ...\n\nAssistant: ..." with the turns in the text itself.
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


@dataclass(frozen=True)
class PreferencePair:
    prompt: list[dict]  # chat messages up to the answer: [{"role": "user", "content": ...}, ...]
    chosen: str  # the preferred assistant answer
    rejected: str
    row: int  # 1-based position in the file, for error messages and traceability


class PreferenceDataConfig(BaseModel):
    """The `data:` block of the preference stages (reward, dpo; prompts for ppo / grpo / rloo)."""

    model_config = ConfigDict(extra="forbid")

    train: str = Field(
        description="preference pairs (.json / .jsonl), or for RL stages a prompt file (.jsonl / .txt)"
    )
    eval: str | None = Field(None, description="held-out pairs; when set, eval_fraction is not used")
    format: Literal["auto", "sharegpt", "hh", "openai"] = Field(
        "auto",
        description="sharegpt (conversations + chosen/rejected), hh (Human:/Assistant: strings), "
        "openai (prompt messages + chosen/rejected); auto: decided from the first row",
    )
    eval_fraction: float = Field(
        0.1, description="share of pairs held out when `eval` is not set; 0 <= x < 1"
    )
    max_rows: int | None = Field(None, ge=1, description="keep only the first N pairs of each file")
    seed: int = Field(0, description="seed for the train/eval shuffle")

    @field_validator("eval_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(f"eval_fraction must be >= 0 and < 1, got {value}")
        return value


def split_pairs(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """Hold out round(n * fraction) items (at least 1 when n >= 2); both parts keep file order."""
    n = len(pairs)
    if fraction == 0 or n < 2:
        return list(pairs), []
    k = min(max(round(n * fraction), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def load_preference_split(config: PreferenceDataConfig) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, eval) pairs from a PreferenceDataConfig."""
    train = load_preferences(config.train, format=config.format, limit=config.max_rows)
    if config.eval is not None:
        return train, load_preferences(config.eval, format=config.format, limit=config.max_rows)
    return split_pairs(train, config.eval_fraction, config.seed)


# ---------------------------------------------------------------- reading


def _records(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise BadInputError(
            f"{path}: no such file.", fix="point `data.train` / `data.eval` at a .json or .jsonl file."
        )
    if p.suffix.lower() not in (".json", ".jsonl"):
        raise BadInputError(f"{path}: preference data must be .json or .jsonl, not {p.suffix or '(no suffix)'!r}.",
                            fix="convert the file to JSON lines, one pair per line.")  # fmt: skip
    text = read_text(p, encoding="utf-8-sig")
    if p.suffix.lower() == ".jsonl":
        records = []
        for number, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise BadInputError(
                        f"{path} line {number}: not valid JSON ({e.msg}).",
                        fix="fix that line; each line must be one JSON object.",
                    ) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadInputError(
                f"{path} line {e.lineno}: not valid JSON ({e.msg}).", fix="fix the JSON there."
            ) from None
        records = data["data"] if isinstance(data, dict) and isinstance(data.get("data"), list) else data
        if not isinstance(records, list):
            raise BadInputError(
                f"{path}: expected a JSON list of pairs.", fix="wrap the records in a top-level list."
            )
    if not records:
        raise BadInputError(f"{path}: the file holds 0 rows.", fix="add at least one preference pair.")
    return records


class _Row:
    """One record and where it sits, so every error names the file, the row and the field."""

    def __init__(self, path: str | Path, number: int, record: Any) -> None:
        self.path, self.number, self.record = str(path), number, record
        if not isinstance(record, dict):
            self.fail(
                None, f"expected an object, got {type(record).__name__}", "make every row a JSON object."
            )

    def fail(self, field: str | None, problem: str, fix: str) -> Any:
        where = f"{self.path} row {self.number}" + (f", field {field!r}" if field else "")
        raise BadInputError(f"{where}: {problem}.", fix=fix)

    def get(self, field: str) -> Any:
        if field not in self.record or self.record[field] is None:
            self.fail(field, "missing", f"every row needs {field!r}; fix or drop this row.")
        return self.record[field]


def _detect(row: _Row) -> str:
    rec = row.record
    if "conversations" in rec:
        return "sharegpt"
    if "prompt" in rec:
        return "openai"
    if isinstance(rec.get("chosen"), str) and "Assistant:" in rec["chosen"]:
        return "hh"
    return row.fail(None, f"cannot tell the preference format from fields {sorted(rec)}",
                    "set data.format to sharegpt (conversations + chosen/rejected), hh (Human:/Assistant: "
                    "strings) or openai (prompt messages + chosen/rejected).")  # fmt: skip


def _text(row: _Row, field: str, value: Any) -> str:
    if not isinstance(value, str):
        row.fail(field, f"expected text, got {type(value).__name__}", "give the answer as a string.")
    return value


def _sharegpt(row: _Row) -> PreferencePair:
    turns = row.get("conversations")
    if not isinstance(turns, list):
        row.fail("conversations", "expected a list of {from, value} turns", "write the turns as a JSON list.")
    prompt = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "value" not in turn:
            row.fail(f"conversations[{i}]", "expected {from, value}", "give each turn `from` and `value`.")
        role = _SHAREGPT_ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
        if role is None:
            row.fail(f"conversations[{i}].from", f"unknown role {turn.get('from')!r}",
                     f"use one of {sorted(_SHAREGPT_ROLES)}.")  # fmt: skip
        prompt.append({"role": role, "content": _text(row, f"conversations[{i}].value", turn["value"])})
    if isinstance(row.record.get("system"), str) and row.record["system"].strip():
        prompt.insert(0, {"role": "system", "content": row.record["system"]})

    def answer(field: str) -> str:
        value = row.get(field)
        if isinstance(value, dict):
            return _text(row, f"{field}.value", value.get("value", value.get("content")))
        return _text(row, field, value)

    return _pair(row, prompt, answer("chosen"), answer("rejected"))


def _openai(row: _Row) -> PreferencePair:
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list):
        row.fail(
            "prompt", "expected a list of {role, content} messages", "write the prompt as chat messages."
        )
    for i, message in enumerate(prompt):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            row.fail(f"prompt[{i}]", "expected {role: system|user|assistant, content}", "fix that message.")
        _text(row, f"prompt[{i}].content", message.get("content"))
    prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]

    def answer(field: str) -> str:
        value = row.get(field)
        if isinstance(value, list):  # TRL's conversational layout: [{"role": "assistant", ...}]
            if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
                row.fail(
                    field, "expected one assistant message", f"make {field!r} [{{role: assistant, content}}]."
                )
            value = value[0]
        if isinstance(value, dict):
            return _text(row, f"{field}.content", value.get("content"))
        return _text(row, field, value)

    return _pair(row, prompt, answer("chosen"), answer("rejected"))


def _hh_turns(row: _Row, field: str) -> list[dict]:
    text = _text(row, field, row.get(field))
    parts = _HH_TURN.split(text)  # ["", "Human", "hi", "Assistant", "hello", ...]
    if len(parts) < 3 or parts[0].strip():
        row.fail(field, "expected '\\n\\nHuman: ...\\n\\nAssistant: ...' turns", "use the HH-RLHF layout.")
    return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2])]  # fmt: skip


def _hh(row: _Row) -> PreferencePair:
    chosen, rejected = _hh_turns(row, "chosen"), _hh_turns(row, "rejected")
    for field, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            row.fail(field, "does not end with an Assistant turn", "end the dialogue with the answer.")
    # The shared dialogue is the prompt; the two final Assistant turns are the answers.
    if chosen[:-1] != rejected[:-1]:
        row.fail("rejected", "its dialogue before the last answer differs from the chosen one",
                 "both strings must share every turn but the last Assistant turn.")  # fmt: skip
    return _pair(row, chosen[:-1], chosen[-1]["content"], rejected[-1]["content"])


def _pair(row: _Row, prompt: list[dict], chosen: str, rejected: str) -> PreferencePair:
    if not prompt or not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        row.fail("prompt", "empty (no user message with text)", "give the pair a prompt, or drop the row.")
    if prompt[-1]["role"] == "assistant":
        row.fail("prompt", "ends with an assistant message, so there is nothing to answer",
                 "end the prompt with the user turn the answers reply to.")  # fmt: skip
    if chosen.strip() == rejected.strip():
        row.fail("rejected", "same text as chosen, so the pair states no preference", "drop this row.")
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, row=row.number)


_FORMATS = {"sharegpt": _sharegpt, "hh": _hh, "openai": _openai}


def load_preferences(
    path: str | Path, *, format: str = "auto", limit: int | None = None
) -> list[PreferencePair]:
    """Pairs from a .json / .jsonl file in sharegpt, HH-RLHF or OpenAI layout (`auto`: from the
    first row). Raises BadInputError naming the row and field of the first bad pair."""
    if format not in FORMATS:
        raise BadInputError(f"unknown preference format {format!r}.", fix=f"use one of {', '.join(FORMATS)}.")
    records = _records(path)[:limit]
    rows = [_Row(path, i, rec) for i, rec in enumerate(records, 1)]
    convert = _FORMATS[_detect(rows[0]) if format == "auto" else format]
    return [convert(row) for row in rows]


def load_prompts(path: str | Path, *, limit: int | None = None) -> list[list[dict]]:
    """Prompts for RL: the prompts of a preference file, or a file of prompts of its own --
    .txt (one prompt a line), .jsonl / .json rows with `prompt` (text or messages) or `messages`."""
    p = Path(path)
    if p.suffix.lower() == ".txt":
        if not p.is_file():
            raise BadInputError(
                f"{path}: no such file.", fix="point the prompt file path at a .txt or .jsonl file."
            )
        lines = [line.strip() for line in read_text(p, encoding="utf-8-sig").splitlines() if line.strip()]
        if not lines:
            raise BadInputError(f"{path}: holds no prompts.", fix="write one prompt per line.")
        return [[{"role": "user", "content": line}] for line in lines[:limit]]
    records = _records(path)[:limit]
    first = records[0] if isinstance(records[0], dict) else {}
    if "chosen" in first:  # a preference file: its prompts, once each
        prompts, seen = [], set()
        for pair in load_preferences(path, limit=limit):
            key = json.dumps(pair.prompt, sort_keys=True)
            if key not in seen:
                seen.add(key)
                prompts.append(pair.prompt)
        return prompts
    out = []
    for i, rec in enumerate(records, 1):
        row = _Row(path, i, rec)
        value = rec.get("prompt", rec.get("messages"))
        if isinstance(value, str):
            value = [{"role": "user", "content": value}]
        if not isinstance(value, list) or not value:
            row.fail("prompt", "missing or empty", "give each row a `prompt` (text or chat messages).")
        if value[-1].get("role") == "assistant":
            value = value[:-1]  # a full conversation: prompt = everything before the last answer
        if not any(
            isinstance(m, dict) and m.get("role") == "user" and str(m.get("content", "")).strip()
            for m in value
        ):
            row.fail("prompt", "has no user message with text", "give each row a user prompt.")
        out.append([{"role": m["role"], "content": m["content"]} for m in value])
    return out


def data_sha256(*paths: str | None) -> str:
    """The lineage's `data_sha256` of a stage's data files: their sha256s, joined by ':'."""
    return ":".join(hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if p)

"""Reading a user's files: text that must be UTF-8, YAML that must parse, data that must fit a pydantic
model. Every failure is one BadInputError that names the file (and line:column where known). And
`write_jsonl_atomic`, the one way rows are written (temp file, fsync, rename)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agentkit.errors import BadInputError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound="BaseModel")


# ---- text ---------------------------------------------------------------------------------
def decode_utf8(path: str | Path, raw: bytes, *, encoding: str = "utf-8") -> str:
    """`raw` as text; bytes that are not UTF-8 fail naming the file, the line and the byte.
    `encoding="utf-8-sig"` also drops a BOM (Excel writes one before a table's header)."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1  # a JSONL file's row number, too
        raise BadInputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}).",
            fix=f"save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {Path(path).name}`.",
        ) from None


def read_text(path: str | Path, *, encoding: str = "utf-8") -> str:
    """The text of a user's file. A missing file raises FileNotFoundError (callers say which file it
    should have been); bytes that are not UTF-8 raise BadInputError."""
    return decode_utf8(path, Path(path).read_bytes(), encoding=encoding)


# ---- YAML ---------------------------------------------------------------------------------
def parse_yaml(path: str | Path, text: str, *, first_line: int = 1) -> Any:
    """`yaml.safe_load(text)`; a syntax error is one line, `FILE:LINE:COL: invalid YAML: problem.`
    `first_line` is where `text` starts in the file (front matter inside a .jinja prompt)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc, first_line=first_line) from None


def load_yaml(path: str | Path) -> Any:
    """A user's YAML file, read as UTF-8 and parsed; every failure names the file."""
    return parse_yaml(path, read_text(path))


def yaml_error(path: str | Path, exc: Exception, *, first_line: int = 1) -> BadInputError:
    """One line for a PyYAML error. Its own str() is 4-8 lines (`in "<unicode string>"`, the
    source line, a caret); the marks are 0-based, so line and column get +1 here."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + first_line}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc).split("\n", 1)[0]
    opened = getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None)
    if opened is not None and context and (mark is None or opened.line != mark.line):
        # e.g. an unclosed '[': the problem is at the end of the file, the cause where it opened
        problem = f"{problem} ({context} at {opened.line + first_line}:{opened.column + 1})"
    return BadInputError(
        f"{where}: invalid YAML: {problem}.",
        fix="fix the YAML there (quote strings that contain ': ' or start with '{', indent with spaces).",
    )


# ---- pydantic -----------------------------------------------------------------------------
def validation_line(exc: ValidationError, limit: int = 4) -> str:
    """The first `limit` field errors on one line: `field 'a.b': message; field 'c': message (+2 more)`."""
    errors = exc.errors()
    parts = []
    for error in errors[:limit]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"field {where!r}: {message}" if where else message)
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def validate(model: type[M], data: Any, path: str | Path, *, fix: str) -> M:
    """`model.model_validate(data)`; field errors become one BadInputError `FILE: field 'x': ...`."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadInputError(f"{path}: {validation_line(exc)}.", fix=fix) from None


def write_jsonl_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    """Write next to `path`, fsync, then rename over it: a crash leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

"""Reading a user's files: text that must be UTF-8, YAML that must parse, data that must fit a pydantic
model. Every failure is one BadInputError that names the file (and line:column where known). And
`write_jsonl_atomic`, the one way rows are written (temp file, fsync, rename)."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
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


# ---- JSONL --------------------------------------------------------------------------------
def json_lines(name: str | Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for every non-blank line of a JSONL text; a line that is not
    JSON, or not an object, fails naming the file and the line. split("\n"), not splitlines(): JSON
    strings may hold U+2028 unescaped, and splitlines() would cut a record there."""
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{name} line {number}: not valid JSON ({exc.msg} at column {exc.colno}).",
                                fix="fix that line: JSONL is one JSON object a line.") from None  # fmt: skip
        if not isinstance(record, dict):
            raise BadInputError(f"{name} line {number}: expected a JSON object with named fields, got "
                                f"{type(record).__name__}.", fix="make every line a JSON object.")  # fmt: skip
        rows.append((number, record))
    return rows


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
def _is_union_tag(part: Any) -> bool:
    """pydantic puts a union member's name in an error's loc ("FileExistsCheck", "str", "list[str]")."""
    return isinstance(part, str) and (part[:1].isupper() or part in ("str", "int", "float", "bool") or "[" in part)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not _is_union_tag(p))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through unions, lists and dicts)."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed where an unknown one (the last part of `loc`) was found."""
    owner, candidates = model, [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if _is_union_tag(part):  # the union member pydantic tried: the owner from here on
            owner = next((m for m in candidates if m.__name__ == part), owner)
            continue
        field = owner.model_fields.get(str(part))
        candidates = _models_in(field.annotation) if field is not None else []
        owner = candidates[0] if candidates else owner
    return sorted(owner.model_fields)


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (the deepest one that exists); None for the top."""
    import yaml

    try:
        node = root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if _is_union_tag(key):
            continue
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line if line is not None else (root.start_mark.line + 1 if root is not None else None)


def _telling_first(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors, an unknown key first: a union (checks, model) reports every member's complaint,
    and the unknown key is the one that tells what is wrong."""
    errors = exc.errors()
    return sorted(errors, key=lambda e: e.get("type") != "extra_forbidden")


def validation_line(exc: ValidationError, limit: int = 4, *, model: type[BaseModel] | None = None) -> str:
    """The first `limit` field errors on one line: `field 'a.b': message; field 'c': message (+2 more)`.
    With `model`, an unknown field lists the fields allowed there."""
    errors = _telling_first(exc)
    parts = []
    for error in errors[:limit]:
        loc = tuple(error.get("loc", ()))
        where = _field_path(loc)
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden" and model is not None:
            message = f"unknown field; allowed: {', '.join(_allowed(model, loc))}"
        parts.append(f"field {where!r}: {message}" if where else message)
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def validate(model: type[M], data: Any, path: str | Path, *, fix: str, text: str | None = None) -> M:
    """`model.model_validate(data)`; field errors become one BadInputError `FILE[:LINE]: field 'x': ...`,
    the line (of the first error's field) when the file's `text` is given."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = _telling_first(exc)[0]
        first = tuple(error.get("loc", ()))
        if not first:  # a model validator's error names its field in the text (a tune config's method block)
            named = re.search(r"field '([\w.\[\]]+)'", str(error.get("msg", "")))
            first = tuple(int(p) if p.isdigit() else p for p in named.group(1).split(".")) if named else ()
        line = _line_of(text, first) if text is not None and first else None
        where = f"{path}:{line}" if line else str(path)
        raise BadInputError(f"{where}: {validation_line(exc, model=model)}.", fix=fix) from None


def load_model_file(model: type[M], path: str | Path, *, what: str, fix: str,
                    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> M:  # fmt: skip
    """A user's YAML file (a tune.yaml, pipeline, goal, suite, ...) as `model`, in one way: a missing
    file, text that is not UTF-8, YAML that does not parse, a file that is not a mapping and a field
    that does not fit are each one BadInputError naming the file, and the line where known.
    `prepare(data)` may rewrite the mapping before validation (paths relative to the file)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such {what} file.", fix=f"check the path of the {what} file.")
    text = read_text(path)
    data = parse_yaml(path, text)
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: a {what} file is a YAML mapping of keys, not {type(data).__name__}.", fix=fix)
    if prepare is not None:
        data = prepare(data)
    return validate(model, data, path, fix=fix, text=text)


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

"""The shortest JSON value a schema accepts, used to reserve enough of the token budget to close a
constrained reply (see `GrammarEngine`)."""

from __future__ import annotations

from typing import Any


def minimal_instance(schema: Any, defs: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A small valid instance: required keys only, empty strings / arrays, zeros, first choices."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    defs = defs if defs is not None else {**schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return minimal_instance(defs.get(name, {}), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return min(schema["enum"], key=lambda v: len(str(v)))
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [minimal_instance(s, defs, depth + 1) for s in schema[key]]
            return min(options, key=lambda v: len(repr(v)))
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return minimal_instance(merged, defs, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props.get(k, {}), defs, depth + 1) for k in schema.get("required", [])}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), defs, depth + 1)] * int(schema.get("minItems", 0))
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        return max(0, schema.get("minimum", 0)) if "minimum" in schema else 0
    if kind == "boolean":
        return False
    return None

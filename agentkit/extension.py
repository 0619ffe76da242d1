"""What every `register_*` extension point checks first: a lower_snake_case name (it is written
into artifacts and configs) that is not taken yet. Each caller adds the checks of its own kind."""

from __future__ import annotations

from collections.abc import Container

from agentkit.errors import BadInputError
from agentkit.names import EXTENSION_NAME

NAME = EXTENSION_NAME.pattern  # matched whole (fullmatch), as everywhere


def check_new_name(kind: str, name: object, taken: Container[str]) -> str:
    """`name` if it is valid and free; else one BadInputError naming the `kind` ("tool", ...) and the fix."""
    if not EXTENSION_NAME.is_valid(name):
        raise BadInputError(
            f"{kind.capitalize()} name {name!r} is not lower_snake_case (a letter, then letters, digits, _).",
            fix=f"rename it, e.g. 'my_{kind.replace(' ', '_')}'.",
        )
    if name in taken:
        raise BadInputError(
            f"A {kind} named {name!r} is already registered.",
            fix=f"rename yours, e.g. '{name}_2' or 'mypkg_{name}'.",
        )
    return name

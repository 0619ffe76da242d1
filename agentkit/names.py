"""The rules for every id and name that becomes a folder, a file name or a persisted key (registry
ids, index names, vector memory names, prompt names, extension names), each checked in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentkit.errors import BadInputError


@dataclass(frozen=True)
class NameRule:
    """One kind of name: its pattern (matched whole) and the rule a user reads when it fails."""

    kind: str  # "registry id": the error reads "Invalid registry id 'x'."
    pattern: re.Pattern[str]
    rule: str  # completes "use ...": "1-64 characters of a-z, 0-9, ..."

    def is_valid(self, value: object) -> bool:
        # fullmatch, never match() with `^...$`: `$` also matches before a final "\n", so
        # "my-id\n" passed and became a folder whose name ends in a newline.
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None

    def check(self, value: object) -> str:
        """`value` if it follows the rule; else BadInputError naming the kind, the value and the rule."""
        if not self.is_valid(value):
            raise BadInputError(f"Invalid {self.kind} {value!r}.", fix=f"use {self.rule}.")
        return value  # type: ignore[return-value]  # is_valid checked it is a str


REGISTRY_ID = NameRule(
    "registry id",
    re.compile(r"[a-z0-9][a-z0-9._-]{0,63}"),
    "1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
)
# Chroma collection names must start and end with [a-z0-9]; one rule for every index backend.
INDEX_NAME = NameRule(
    "index name",
    re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?"),
    "1-64 characters of a-z, 0-9, '.', '_' or '-', starting and ending with a letter or digit",
)
VECTOR_MEMORY_NAME = NameRule(
    "vector memory name",
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
    "1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
)
PROMPT_NAME = NameRule(
    "prompt name",
    re.compile(r"[a-z0-9][a-z0-9_-]{0,63}"),
    "1-64 of a-z, 0-9, '_' or '-'",
)
# Tools, tuning methods, index backends, ...: written into artifacts and configs as identifiers.
EXTENSION_NAME = NameRule(
    "extension name",
    re.compile(r"[a-z][a-z0-9_]{0,63}"),
    "lower_snake_case: a letter, then letters, digits or '_'",
)

"""The errors agentkit raises on purpose, each carrying the one-line fix a user should apply.

The CLI maps them to exit codes (2 = bad input, 1 = runtime failure); library callers can catch
`AgentkitError` or the specific subclass.
"""

from __future__ import annotations


class AgentkitError(Exception):
    """Base class: `message` says what is wrong, `fix` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} Fix: {self.fix}" if self.fix else self.message


class BadInputError(AgentkitError, ValueError):
    """The user gave us something we cannot use: a config field, an id, a file."""

    exit_code = 2


class UnknownModelError(BadInputError, KeyError):
    """A model or adapter id that the registry does not hold."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.one_line()


class EntryExistsError(BadInputError):
    """An id that is already taken in the registry."""


class UnsafeWeightsError(BadInputError):
    """Weights in a pickle format (`.bin`, `.pt`, ...): we load safetensors only."""


class IntegrityError(AgentkitError):
    """Weights on disk no longer match the sha256 recorded in the card, or the card itself does not read."""


class MissingPackageError(AgentkitError):
    """An optional or model-carrying package is not installed; the fix is its pip command."""


class ModelNotInstalledError(MissingPackageError, BadInputError):
    """A built-in model whose packages are not installed: bad input (exit 2) whose fix is
    `agentkit models install ID`."""

    exit_code = 2

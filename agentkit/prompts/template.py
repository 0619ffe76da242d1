"""`LibraryPrompt`: the `ChatPromptTemplate` that `load_prompt` returns, with one-line errors.
A missing variable names the prompt and its variables (jinja2 would otherwise render it as '')."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from agentkit.errors import BadInputError


class MissingVariableError(BadInputError, KeyError):
    """A render without a variable the prompt needs; a KeyError too, as langchain raises there."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.one_line()


class LibraryPrompt(ChatPromptTemplate):
    """A `ChatPromptTemplate` from the prompt library; `metadata["agentkit_prompt"]` is `name@version`."""

    @property
    def prompt_ref(self) -> str:
        return (self.metadata or {}).get("agentkit_prompt", "prompt")

    def _check(self, given: dict[str, Any]) -> None:
        missing = sorted(set(self.input_variables) - set(given) - set(self.partial_variables))
        if missing:
            raise MissingVariableError(
                f"Prompt {self.prompt_ref} is missing variable(s) {', '.join(missing)}; "
                f"it takes {', '.join(self.input_variables)}.",
                fix=f"pass {', '.join(repr(m) for m in missing)} in the input dict.",
            )

    def _validate_input(self, inner_input: Any) -> dict[str, Any]:
        if isinstance(inner_input, dict):
            self._check(inner_input)
        return super()._validate_input(inner_input)

    def format_messages(self, **kwargs: Any) -> list[BaseMessage]:
        self._check(kwargs)
        return super().format_messages(**kwargs)

    async def aformat_messages(self, **kwargs: Any) -> list[BaseMessage]:
        self._check(kwargs)
        return await super().aformat_messages(**kwargs)

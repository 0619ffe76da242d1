"""`PromptSpec`: one prompt file (YAML, or Jinja with a YAML front-matter comment) as a pydantic model.
It validates variables and few-shot examples at load time and builds the langchain `ChatPromptTemplate`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from agentkit.config_io import parse_yaml, read_text, validate
from agentkit.errors import BadInputError
from agentkit.names import PROMPT_NAME

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from agentkit.prompts.template import LibraryPrompt

TemplateFormat = Literal["f-string", "jinja2"]
# A Jinja file is front matter (the first `{# ... #}` comment, YAML) then messages, each opened by a
# marker line such as `{# system #}`. Markers are Jinja comments, so the file stays valid Jinja.
_FRONT_MATTER_RE = re.compile(r"\A\s*\{#-?(.*?)-?#\}[ \t]*\n?", re.DOTALL)
_ROLE_MARKER_RE = re.compile(r"^\{#-?\s*(system|user|assistant|placeholder)\s*-?#\}[ \t]*$", re.MULTILINE)


class MessageSpec(BaseModel):
    """One message of a prompt; `placeholder` inserts a list of messages (e.g. chat history)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "placeholder"]
    template: str = Field(
        description="the message text with {variables} (f-string) or {{ variables }} (jinja2); "
        "for a placeholder, the name of the variable that holds the messages"
    )


class FewShotExample(BaseModel):
    """One example exchange, inserted as a user/assistant message pair after the system message(s)."""

    model_config = ConfigDict(extra="forbid")

    input: str | dict[str, JsonValue] = Field(
        description="the user turn: literal text, or variables rendered through the prompt's last user template"
    )
    output: str = Field(description="the assistant's reply to that turn")


class PromptSpec(BaseModel):
    """A prompt addressed as `name@version`: messages, their template format and few-shot examples."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="lower-case letters, digits, '_' or '-'; the file stem gives it by default")
    version: int = Field(default=1, ge=1, description="`load_prompt(name)` picks the highest")
    description: str = ""
    template_format: TemplateFormat = Field(
        default="f-string",
        description="f-string ({var}) or jinja2 ({{ var }}, loops); .jinja files are jinja2",
    )
    input_variables: list[str] | None = Field(
        default=None, description="the variables the templates use; checked against them when given"
    )
    messages: list[MessageSpec] = Field(min_length=1)
    few_shot: list[FewShotExample] = Field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not PROMPT_NAME.is_valid(value):
            raise ValueError(f"{value!r} is not a prompt name: use {PROMPT_NAME.rule}")
        return value

    @model_validator(mode="after")
    def _check_variables(self) -> PromptSpec:
        found = set(self.required_variables())
        if self.input_variables is not None and set(self.input_variables) != found:
            raise ValueError(
                f"input_variables {sorted(self.input_variables)} do not match the variables the "
                f"templates use, {sorted(found)}: list exactly those"
            )
        for index, example in enumerate(self.few_shot):
            if isinstance(example.input, dict):
                self._example_text(index, example.input)  # raises on a missing variable
        return self

    # ---- variables and examples -----------------------------------------------------------
    def required_variables(self) -> list[str]:
        """Variables every render needs; placeholders are optional (they default to no messages)."""
        names: set[str] = set()
        for index, message in enumerate(self.messages):
            if message.role != "placeholder":
                names.update(
                    _template_variables(message.template, self.template_format, f"messages[{index}]")
                )
        return sorted(names)

    def placeholders(self) -> list[str]:
        return [m.template.strip() for m in self.messages if m.role == "placeholder"]

    def _example_text(self, index: int, values: dict[str, JsonValue]) -> str:
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            raise ValueError(f"few_shot[{index}].input is a mapping but no user message exists to render it")
        template = users[-1].template
        needed = set(_template_variables(template, self.template_format, "the last user message"))
        missing = sorted(needed - set(values))
        if missing:
            raise ValueError(
                f"few_shot[{index}].input lacks {', '.join(missing)} (the last user message uses them)"
            )
        return _render(template, self.template_format, values)

    def example_messages(self) -> list[BaseMessage]:
        from langchain_core.messages import AIMessage, HumanMessage

        out: list[BaseMessage] = []
        for index, example in enumerate(self.few_shot):
            text = (
                example.input if isinstance(example.input, str) else self._example_text(index, example.input)
            )
            out += [HumanMessage(text), AIMessage(example.output)]
        return out

    # ---- langchain ------------------------------------------------------------------------
    def to_chat_prompt(self) -> LibraryPrompt:
        """The `ChatPromptTemplate`: system message(s), few-shot pairs, then the other messages.

        Few-shot pairs are concrete messages, so braces inside them are never read as variables.
        """
        from langchain_core.prompts import MessagesPlaceholder
        from langchain_core.prompts.chat import (
            AIMessagePromptTemplate,
            HumanMessagePromptTemplate,
            SystemMessagePromptTemplate,
        )

        from agentkit.prompts.template import LibraryPrompt

        classes = {
            "system": SystemMessagePromptTemplate,
            "user": HumanMessagePromptTemplate,
            "assistant": AIMessagePromptTemplate,
        }
        parts: list[Any] = []
        lead = 0  # leading system messages stay first; examples follow them
        while lead < len(self.messages) and self.messages[lead].role == "system":
            lead += 1
        for index, message in enumerate(self.messages):
            if index == lead:
                parts += self.example_messages()
            if message.role == "placeholder":
                parts.append(MessagesPlaceholder(message.template.strip(), optional=True))
            else:
                parts.append(
                    classes[message.role].from_template(
                        message.template, template_format=self.template_format
                    )
                )
        if lead == len(self.messages):
            parts += self.example_messages()
        prompt = LibraryPrompt(parts, template_format=self.template_format)
        prompt.metadata = {"agentkit_prompt": self.ref}
        return prompt


def _template_variables(template: str, template_format: str, where: str) -> list[str]:
    import jinja2
    from langchain_core.prompts.string import get_template_variables

    try:
        return get_template_variables(template, template_format)
    except (ValueError, jinja2.TemplateSyntaxError) as exc:  # the f-string parser raises ValueError
        line = getattr(exc, "lineno", None)
        at = f" (line {line} of the template)" if line else ""
        raise ValueError(f"{where}: invalid {template_format} template{at}: {exc}") from None


def _render(template: str, template_format: str, values: dict[str, Any]) -> str:
    from langchain_core.prompts.string import DEFAULT_FORMATTER_MAPPING

    return DEFAULT_FORMATTER_MAPPING[template_format](template, **values)


# ---- files -------------------------------------------------------------------------------
def parse_prompt_file(path: Path, name: str, version: int) -> PromptSpec:
    """Read one prompt file; `name` / `version` come from the file name and must agree with the file."""
    text = read_text(path)
    if path.suffix == ".jinja":
        data = _jinja_file_data(path, text)
    else:
        data = parse_yaml(path, text)
        if not isinstance(data, dict):
            raise BadInputError(
                f"{path}: a prompt file must be a YAML mapping, got {type(data).__name__}.",
                fix="start it with `description:` and `messages:` (see agentkit/prompts/builtin/).",
            )
    for key, expected in (("name", name), ("version", version)):
        if key in data and data[key] != expected:
            raise BadInputError(
                f"{path}: {key} {data[key]!r} disagrees with the file name, which says {expected!r}.",
                fix=f"rename the file to <name>@<version>{path.suffix} or remove the `{key}:` line.",
            )
    data = {**data, "name": name, "version": version}
    return validate(PromptSpec, data, path, fix="correct those fields of the prompt file.",
                    text=None if path.suffix == ".jinja" else text)


def _jinja_file_data(path: Path, text: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    body, body_line = text, 1
    front = _FRONT_MATTER_RE.match(text)
    if front and not _ROLE_MARKER_RE.fullmatch(front.group(0).strip()):
        loaded = parse_yaml(path, front.group(1))
        if loaded is not None and not isinstance(loaded, dict):
            raise BadInputError(
                f"{path}: the front-matter comment must hold YAML keys (description:, few_shot:, ...).",
                fix="write `{# description: ... #}` or remove the comment.",
            )
        data = loaded or {}
        body, body_line = text[front.end() :], 1 + text[: front.end()].count("\n")
    if "messages" in data:
        raise BadInputError(
            f"{path}: a .jinja prompt takes its messages from the body, not from `messages:`.",
            fix="remove `messages:` from the front matter, or write the prompt as YAML.",
        )
    if data.get("template_format", "jinja2") != "jinja2":
        raise BadInputError(
            f"{path}: .jinja files are jinja2 templates; template_format {data['template_format']!r} contradicts that.",
            fix="remove `template_format:` or rename the file to .yaml.",
        )
    markers = list(_ROLE_MARKER_RE.finditer(body))
    if not markers:
        messages = [{"role": "user", "template": body.strip("\n")}]
    else:
        head = body[: markers[0].start()]
        if head.strip():
            line = body_line + len(head) - len(head.lstrip())
            raise BadInputError(
                f"{path}:{line}: text before the first role marker.",
                fix="open every message with a marker line such as {# system #} or {# user #}.",
            )
        messages = []
        for index, marker in enumerate(markers):
            end = markers[index + 1].start() if index + 1 < len(markers) else len(body)
            messages.append({"role": marker.group(1), "template": body[marker.end() : end].strip("\n")})
    return {**data, "template_format": "jinja2", "messages": messages}

"""The request bodies of the OpenAI endpoints we serve, as pydantic models with extra="forbid": an
unknown or unsupported field is a 400 that names it (`param`), never silently ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentkit.server.errors import ApiError, bad_request

ROLES = ("system", "developer", "user", "assistant", "tool")
_TAGS = {"role": ROLES, "type": ("text", "json_object", "json_schema")}  # the discriminated unions below


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TextPart(_Strict):
    type: str
    text: str

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        if value != "text":
            raise ValueError(f"{value!r} parts are not supported: local models here take text only")
        return value


Content = str | list[TextPart]


class SystemMessage(_Strict):
    role: Literal["system", "developer"]  # "developer" is what newer OpenAI models call system
    content: Content
    name: str | None = None


class UserMessage(_Strict):
    role: Literal["user"]
    content: Content
    name: str | None = None


class FunctionCall(_Strict):
    name: str
    arguments: str = Field(description="the arguments as a JSON object, in a string")


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_Strict):
    role: Literal["assistant"]
    content: Content | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs content or tool_calls")
        return self


class ToolMessage(_Strict):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionDef(_Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchema(_Strict):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class TextFormat(_Strict):
    type: Literal["text"]


class JsonObjectFormat(_Strict):
    type: Literal["json_object"]


class JsonSchemaFormat(_Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # padding against length side channels; nothing to pad here


class ChatCompletionRequest(_Strict):
    """POST /v1/chat/completions. Fields OpenAI has and local decoding cannot honour are accepted only
    at their neutral value, so a client that relies on one hears about it."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # the grammar decides how many calls; accepted, not enforced
    response_format: ResponseFormat | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # what the engines take: 64 bits
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    n: int | None = None
    # accepted and ignored: they do not change the reply
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # accepted at their neutral value only
    logprobs: bool | None = None
    top_logprobs: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError(f"n={value} is not supported: one choice per request; send {value} requests instead")
        return value

    @field_validator("stop")
    @classmethod
    def _up_to_four(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError(f"at most 4 stop sequences, got {len(value)}")
        return value

    @field_validator("logprobs", "top_logprobs", "frequency_penalty", "presence_penalty", "logit_bias")
    @classmethod
    def _neutral(cls, value: Any) -> Any:
        if value:  # None, False, 0, 0.0 and {} are the neutral values
            raise ValueError(f"{value!r} is not supported by local models here; leave it unset")
        return value

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def budget(self) -> int | None:
        """max_completion_tokens (OpenAI's current name) over the deprecated max_tokens."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def budget_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"


class EmbeddingRequest(_Strict):
    """POST /v1/embeddings: text in, one vector per text."""

    model: str = Field(min_length=1)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            raise ValueError(
                "token ids are not accepted, only text (a string or a list of strings); LangChain's "
                "OpenAIEmbeddings sends ids unless check_embedding_ctx_length=False"
            )
        if value == [] or value == "":
            raise ValueError("input is empty; send at least one non-empty text")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# ---- validation errors -> one 400 that names the field ---------------------------------------------
def parse(model: type[BaseModel], data: Any) -> Any:
    """`model` validated from `data`, or the ApiError of its first error, naming the field."""
    if not isinstance(data, dict):
        raise bad_request(f"The request body must be a JSON object, not {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, data) from None


def _first_error(exc: ValidationError, data: Any) -> ApiError:
    # A union reports one error per branch; the one that reaches deepest into the request is the
    # branch the client meant (a content list with a bad part, not "should be a string").
    errors = exc.errors()
    error = max(errors, key=lambda e: len(_steps(e, data)))
    param = _format(_steps(error, data))
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = error.get("ctx", {}).get("discriminator", "'type'").strip("'")
        param = f"{param}.{tag}"
        got = error.get("ctx", {}).get("tag")
        allowed = error.get("ctx", {}).get("expected_tags") or ", ".join(map(repr, _TAGS.get(tag, ())))
        what = f"{got!r} is not a valid {tag}" if got is not None else f"{tag} is missing"
        return bad_request(f"Invalid {param}: {what}; use one of {allowed}.", param, code="invalid_value")
    if kind == "extra_forbidden":
        return bad_request(f"Unrecognized request argument supplied: {param}.", param, code="unknown_parameter")
    if kind == "missing":
        return bad_request(f"Missing required parameter: {param}.", param, code="missing_required_parameter")
    message = str(error["msg"]).removeprefix("Value error, ")
    return bad_request(f"Invalid {param}: {message}.", param, code="invalid_value")


def _steps(error: Any, data: Any) -> list[str | int]:
    """The steps of a pydantic `loc` that exist in the request (plus a missing field's name): pydantic
    also puts union branch names ("user", "list[TextPart]") into `loc`."""
    loc, steps, node = error["loc"], [], data
    for index, step in enumerate(loc):
        into_list = isinstance(node, list) and isinstance(step, int) and step < len(node)
        if into_list or (isinstance(node, dict) and isinstance(step, str) and step in node):
            steps.append(step)
            node = node[step]
        elif error["type"] == "missing" and index == len(loc) - 1:
            steps.append(step)
    return steps


def _format(steps: list[str | int]) -> str:
    """`messages[2].tool_calls[0].function`: the `param` of OpenAI's error shape."""
    path = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")
    return path or "body"

"""Model specs: where agentkit is configured with a model, a registry id or any LangChain
provider (`provider: openai`, `base_url`, `model`) can stand in, via `init_chat_model`."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.errors import BadInputError, MissingPackageError
from agentkit.models.engines import Engine

LOCAL = "agentkit"


class ModelSpec(BaseModel):
    """`{model: smollm2-135m-instruct, adapter: my-lora}` or `{provider: openai, model: ..., base_url: ...}`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(
        default="smollm2-135m-instruct", description="registry id or alias, or the provider's model name"
    )
    provider: str = Field(default=LOCAL, description="'agentkit' (local registry) or a LangChain provider")
    adapter: str | None = Field(default=None, description="registry adapter id (provider agentkit only)")
    engine: Engine = Field(
        default=Engine.AUTO, description="auto | transformers | llamacpp (provider agentkit only)"
    )
    base_url: str | None = Field(default=None, description="endpoint of an OpenAI-compatible server")
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments")

    @model_validator(mode="after")
    def _adapter_is_local(self) -> ModelSpec:
        if self.adapter and self.provider != LOCAL:
            raise ValueError("adapter is only valid with provider 'agentkit'; remove it or switch provider")
        if self.engine is not Engine.AUTO and self.provider != LOCAL:
            raise ValueError("engine is only valid with provider 'agentkit'; remove it or switch provider")
        return self


def load_chat_model(spec: ModelSpec | dict[str, Any] | str) -> BaseChatModel:
    """A chat model from a spec; a plain string is a registry id."""
    if isinstance(spec, str):
        spec = ModelSpec(model=spec)
    elif isinstance(spec, dict):
        spec = ModelSpec.model_validate(spec)
    common: dict[str, Any] = {k: v for k, v in (("temperature", spec.temperature), ("max_tokens", spec.max_tokens)) if v is not None}
    if spec.provider == LOCAL:
        from agentkit.models.chat_model import LocalChatModel
        from agentkit.registry import Registry

        # Aliases resolve here, per load: a model loaded after `agentkit models promote` gets the new
        # target; an alias of an adapter runs as {model: its base, adapter: it}.
        model, adapter = Registry(spec.options.get("home")).resolve_chat(spec.model, spec.adapter)
        return LocalChatModel(model=model, adapter=adapter, engine=spec.engine, **common, **spec.options)
    from langchain.chat_models import init_chat_model

    if spec.base_url:
        common["base_url"] = spec.base_url
    try:
        return init_chat_model(spec.model, model_provider=spec.provider, **common, **spec.options)
    except ImportError as exc:
        raise MissingPackageError(
            f"Provider {spec.provider!r} needs a package that is not installed ({exc}).",
            fix=f"pip install langchain-{spec.provider}  (or `pip install 'agentkit[openai]'`).",
        ) from None
    except ValueError as exc:
        raise BadInputError(f"Provider spec rejected: {exc}", fix="check `provider` and `model`.") from None

"""Bad input gets one clear error naming the field; nothing here loads a model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentkit.errors import BadInputError
from agentkit.models import LocalChatModel, LocalEmbeddings, ModelSpec
from agentkit.models.provider import load_chat_model


def test_unknown_config_fields_are_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        LocalChatModel(temprature=0.5)
    with pytest.raises(ValidationError, match="modle"):
        LocalEmbeddings(modle="minilm-l6")
    with pytest.raises(ValidationError, match="adaptor"):
        ModelSpec(model="x", adaptor="y")


@pytest.mark.parametrize("value", [0, -5])
def test_max_new_tokens_must_be_positive(value: int) -> None:
    with pytest.raises(ValidationError, match="max_tokens|max_new_tokens"):
        LocalChatModel(max_new_tokens=value)


def test_per_call_max_new_tokens_checked_before_loading(tmp_path) -> None:
    llm = LocalChatModel(home=str(tmp_path))  # an empty registry: nothing to load
    with pytest.raises(BadInputError, match="max_new_tokens must be > 0"):
        llm.invoke("hi", max_new_tokens=0)


def test_unknown_call_option_is_named(tmp_path) -> None:
    with pytest.raises(BadInputError, match="frequency_penalty"):
        LocalChatModel(home=str(tmp_path)).invoke("hi", frequency_penalty=1.0)


def test_unknown_tool_choice_at_bind_time() -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    with pytest.raises(BadInputError, match="not one of the bound tools"):
        LocalChatModel().bind_tools([add], tool_choice="multiply")


def test_adapter_with_remote_provider_is_refused() -> None:
    with pytest.raises(ValidationError, match="adapter is only valid"):
        ModelSpec(provider="openai", model="gpt-4o-mini", adapter="mine")


def test_provider_spec_builds_a_langchain_model_without_network() -> None:
    pytest.importorskip("langchain_openai", reason="the [openai] extra is not installed")
    llm = load_chat_model(
        {"provider": "openai", "model": "local-served", "base_url": "http://127.0.0.1:9/v1",
         "options": {"api_key": "not-used"}}
    )  # fmt: skip
    assert type(llm).__name__ == "ChatOpenAI" and llm.model_name == "local-served"


def test_registry_id_string_is_a_local_model() -> None:
    llm = load_chat_model("smollm2-135m-instruct")
    assert isinstance(llm, LocalChatModel) and llm.model == "smollm2-135m-instruct"

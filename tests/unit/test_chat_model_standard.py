"""langchain-tests' ChatModelUnitTests: construction, params, bind_tools, structured output.

These build the model object only; nothing is loaded (construction does no I/O).
"""

from __future__ import annotations

from langchain_tests.unit_tests import ChatModelUnitTests

from agentkit.models import LocalChatModel


class TestLocalChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[LocalChatModel]:
        return LocalChatModel

    @property
    def standard_chat_model_params(self) -> dict:
        # The suite adds api_key="test" for hosted providers. A local model has no key, and
        # LocalChatModel rejects unknown fields by design (tests/unit/test_bad_input.py).
        params = super().standard_chat_model_params
        params.pop("api_key")
        return params

    @property
    def chat_model_params(self) -> dict:
        return {"model": "smollm2-135m-instruct"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

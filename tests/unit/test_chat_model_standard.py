"""langchain-tests' ChatModelUnitTests: construction, params, bind_tools, structured output.

These build the model object only; nothing is loaded (construction does no I/O).
"""

from __future__ import annotations

from langchain_tests.unit_tests import ChatModelUnitTests

from tests.standard_capabilities import LocalChatModelCapabilities


class TestLocalChatModelUnit(LocalChatModelCapabilities, ChatModelUnitTests):
    @property
    def standard_chat_model_params(self) -> dict:
        # The suite adds api_key="test" for hosted providers. A local model has no key, and
        # LocalChatModel rejects unknown fields by design (tests/unit/test_bad_input.py).
        params = super().standard_chat_model_params
        params.pop("api_key")
        return params

    @property
    def chat_model_params(self) -> dict:
        return {"model": "smollm2-135m-instruct", "engine": "transformers"}

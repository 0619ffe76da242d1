"""langchain-tests' ChatModelIntegrationTests against the built-in SmolLM2-135M, on the CPU."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.integration.conftest import ensure_second_model
from tests.standard_capabilities import LocalChatModelCapabilities

pytestmark = pytest.mark.integration


class TestLocalChatModelIntegration(LocalChatModelCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict:
        # 96 new tokens keeps each call to a few seconds on 2 cores and leaves room for a tool
        # call's begin tag plus CJK arguments (3 byte-level tokens a character); greedy decoding.
        return {"model": "smollm2-135m-instruct", "max_tokens": 96, "temperature": 0, "engine": "transformers"}

    @property
    def structured_output_kwargs(self) -> dict:
        return {"method": "json_schema"}

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        # a second registry entry (an HF-folder import of the built-in), see conftest
        return ensure_second_model()

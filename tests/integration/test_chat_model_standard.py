"""langchain-tests' ChatModelIntegrationTests against the built-in SmolLM2-135M, on the CPU."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from agentkit.models import LocalChatModel

from .conftest import ensure_second_model

pytestmark = pytest.mark.integration


class TestLocalChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[LocalChatModel]:
        return LocalChatModel

    @property
    def chat_model_params(self) -> dict:
        # 96 new tokens keeps each call to a few seconds on 2 cores and leaves room for a tool
        # call's begin tag plus CJK arguments (3 byte-level tokens a character); greedy decoding.
        return {"model": "smollm2-135m-instruct", "max_tokens": 96, "temperature": 0}

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
    def structured_output_kwargs(self) -> dict:
        return {"method": "json_schema"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return ensure_second_model()

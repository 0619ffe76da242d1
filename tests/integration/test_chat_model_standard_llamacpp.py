"""langchain-tests' ChatModelIntegrationTests on the llama.cpp engine: the built-in SmolLM2-135M's
Q4_1 GGUF, the same capabilities and parameters as the transformers run."""

from __future__ import annotations

import pytest

from tests.integration import test_chat_model_standard as transformers_suite
from tests.integration.test_llamacpp_engine import ensure_second_gguf_model

pytestmark = pytest.mark.integration


# The module, not the class, is imported: a Test* name here would run the transformers suite again.
class TestLlamaCppChatModelIntegration(transformers_suite.TestLocalChatModelIntegration):
    @property
    def chat_model_params(self) -> dict:
        return {**super().chat_model_params, "engine": "llamacpp"}

    @property
    def model_override_value(self) -> str:
        # the override needs a GGUF too: a second entry that keeps the built-in's GGUF
        return ensure_second_gguf_model()

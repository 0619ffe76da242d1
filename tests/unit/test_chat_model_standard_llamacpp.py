"""langchain-tests' ChatModelUnitTests for `LocalChatModel(engine="llamacpp")`: nothing is loaded."""

from __future__ import annotations

from tests.unit import test_chat_model_standard as transformers_suite


# The module, not the class, is imported: a Test* name here would run the transformers suite again.
class TestLlamaCppChatModelUnit(transformers_suite.TestLocalChatModelUnit):
    @property
    def chat_model_params(self) -> dict:
        return {**super().chat_model_params, "engine": "llamacpp"}

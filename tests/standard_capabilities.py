"""What LocalChatModel claims to the langchain-tests suites, stated once for unit and integration."""

from __future__ import annotations

from agentkit.models import LocalChatModel, LocalEmbeddings


class LocalChatModelCapabilities:
    """Truthful capability flags: tools, tool choice, structured output and JSON mode by grammar;
    text only (no image, audio or PDF input)."""

    @property
    def chat_model_class(self) -> type[LocalChatModel]:
        return LocalChatModel

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


class LocalEmbeddingsParams:
    @property
    def embeddings_class(self) -> type[LocalEmbeddings]:
        return LocalEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "minilm-l6"}

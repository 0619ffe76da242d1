"""`ask_model` (another registry model or adapter as a tool: a model you tuned, called by the agent)
and `classify` (a classifier adapter as a tool, through LocalClassifier)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool


def answer_model(context: ToolContext, model: str | None, adapter: str | None, max_tokens: int,
                 timeout_s: float) -> Any:  # fmt: skip
    """The chat model a model-calling tool uses: the one named, else the agent's own, else the built-in.
    A local model gets the tool's own token budget and time limit (generation stops itself, so a
    call that invoke_tool abandons does not keep a core busy)."""
    from agentkit.models import LocalChatModel

    home = str(context.home) if context.home else None
    limits = {"max_new_tokens": max_tokens, "timeout": timeout_s}
    if model is None and adapter is None and context.model is not None:
        if isinstance(context.model, LocalChatModel):
            return context.model.model_copy(update=limits)
        return context.model  # another provider: its own limits apply
    base = model or (context.model.model if isinstance(context.model, LocalChatModel) else None)
    kwargs: dict[str, Any] = {"model": base} if base else {}
    if home is None and isinstance(context.model, LocalChatModel):
        home = context.model.home
    return LocalChatModel(**kwargs, adapter=adapter, home=home, **limits)


class AskModelOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(
        default=None, description="registry id of a chat model; default: the agent's model"
    )
    adapter: str | None = Field(
        default=None, description="registry id of an adapter of `model` (a tuned model)"
    )
    max_tokens: int = Field(default=200, gt=0, description="tokens per answer")
    system: str | None = Field(default=None, description="system prompt sent before each prompt")
    timeout_s: float = Field(default=120.0, gt=0, description="seconds one answer may take")


def check_entries(context: ToolContext, *ids: str | None) -> None:
    """Refuse ids the registry lacks when the goal is read, not at the first call mid-run."""
    from agentkit.registry import Registry

    registry = Registry(context.home)
    for entry in ids:
        if entry is not None:
            registry.card(entry)  # UnknownModelError (a BadInputError) names the fix


def _build_ask_model(context: ToolContext, options: AskModelOptions):  # -> BaseTool
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_core.tools import StructuredTool

    check_entries(context, options.model, options.adapter)
    llm = answer_model(context, options.model, options.adapter, options.max_tokens, options.timeout_s)

    def ask_model(prompt: str) -> str:
        """Ask a language model; returns its reply."""
        messages = [SystemMessage(options.system)] if options.system else []
        reply = llm.invoke([*messages, HumanMessage(str(prompt))])
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        return text.strip() or "(the model gave an empty reply)"

    return StructuredTool.from_function(
        ask_model,
        name="ask_model",
        description="Ask a language model.",
        metadata={"timeout_s": options.timeout_s + 30.0},  # + loading the model on the first call
    )


class ClassifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    adapter: str = Field(
        description="registry id of a classifier: a classification adapter or a fine-tuned one"
    )
    model: str | None = Field(default=None, description="base encoder; default: the adapter's base")


def _build_classify(context: ToolContext, options: ClassifyOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    from agentkit.models import LocalClassifier

    home = str(context.home) if context.home else None
    classifier = LocalClassifier.from_entry(options.adapter, model=options.model, home=home)
    labels = ", ".join(classifier.labels)

    def classify(text: str) -> str:
        """Classify a text; returns its label."""
        if not str(text).strip():
            raise ToolError("empty text.", fix="pass the text to classify.")
        result = classifier.invoke(str(text))
        return f"{result['label']} (score {result['score']:.2f})"

    return StructuredTool.from_function(
        classify, name="classify", description=f"Classify a text as one of: {labels}."
    )


register_tool(
    ToolFactory("ask_model", _build_ask_model, "ask another model or a tuned adapter", AskModelOptions)
)
register_tool(ToolFactory("classify", _build_classify, "classify text with a classifier adapter",
                          ClassifyOptions))  # fmt: skip

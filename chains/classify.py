"""Classification as a chain: a classifier adapter from the registry (`LocalClassifier`), or a
chat model choosing among given labels by its own log-probabilities."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from agentkit.errors import BadInputError


class LabelChooser(Runnable[Any, dict[str, Any]]):
    """`invoke(text)` -> {"label", "score"}: the chat model picks one of `labels` (see scoring.choose)."""

    def __init__(self, model: Any, labels: list[str], prompt: str = "classify") -> None:
        from agentkit.prompts import load_prompt

        if len(labels) < 2:
            raise BadInputError("classify needs at least two labels.", fix="pass labels=['a', 'b', ...].")
        self.model, self.labels, self.prompt = model, list(labels), load_prompt(prompt)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        from agentkit.chains.scoring import choose

        text = input.get("text", "") if isinstance(input, dict) else str(input)
        label, score = choose(self.model, lambda t: self.prompt.format_messages(text=t, labels=self.labels), text,
                              self.labels)  # fmt: skip
        return {"label": label, "score": score}


def classify_chain(*, adapter: str | None = None, labels: list[str] | None = None, model: Any = None,
                   base: str | None = None) -> Runnable:  # fmt: skip
    """A classifier: `adapter=` a registry classifier adapter (or full fine-tuned classifier), or
    `labels=` chosen by a chat model (`model`, default the built-in local chat model)."""
    if adapter is not None:
        from agentkit.models.classifier import LocalClassifier

        return LocalClassifier.from_entry(adapter, model=base)
    if labels is None:
        raise BadInputError("classify_chain needs an adapter or labels.", fix="pass adapter=ID or labels=[...].")
    if model is None:
        from agentkit.models import LocalChatModel

        model = LocalChatModel()
    return LabelChooser(model, labels)

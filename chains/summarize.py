"""Map-reduce summarisation of long documents: summarise each chunk (batched), then merge the
partial summaries, recursively while they are still too long for one reduce prompt."""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableConfig


class SummarizeChain(Runnable[Any, str]):
    """`invoke(text | Document | [Document])` -> one summary string.

    `chunk_size` / `chunk_overlap` are characters of the map step's chunks; `reduce_chars` bounds
    the text one reduce prompt receives (a 135M model with a 2k-token window needs small ones).
    """

    def __init__(self, model: Any, *, chunk_size: int = 1500, chunk_overlap: int = 100, reduce_chars: int = 2500,
                 map_prompt: str = "summarize_map", reduce_prompt: str = "summarize_reduce") -> None:  # fmt: skip
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from agentkit.prompts import load_prompt

        self.model, self.reduce_chars = model, reduce_chars
        self.splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        from agentkit.models.chat_model import LocalChatModel

        if isinstance(model, LocalChatModel):  # small models loop on a sentence when summarising
            model = model.bind(repetition_penalty=max(model.repetition_penalty or 1.0, 1.2))
        self.map = load_prompt(map_prompt) | model | StrOutputParser()
        self.reduce = load_prompt(reduce_prompt) | model | StrOutputParser()

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, Document):
            return value.page_content
        if isinstance(value, list):
            return "\n\n".join(SummarizeChain._text(v) for v in value)
        if isinstance(value, dict):
            return str(value.get("text", ""))
        return str(value)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        chunks = self.splitter.split_text(self._text(input))
        if not chunks:
            return ""
        summaries = [s.strip() for s in self.map.batch([{"text": c} for c in chunks], config=config)]
        while len(summaries) > 1:
            groups, current, size = [], [], 0
            for summary in summaries:  # pack partial summaries into reduce prompts of bounded size
                if current and size + len(summary) > self.reduce_chars:
                    groups.append(current)
                    current, size = [], 0
                current.append(summary)
                size += len(summary)
            groups.append(current)
            if len(groups) == len(summaries) and len(groups) > 1:  # each alone exceeds the bound: pair them
                groups = [summaries[i : i + 2] for i in range(0, len(summaries), 2)]
            summaries = [s.strip() for s in self.reduce.batch([{"summaries": g} for g in groups], config=config)]
        return summaries[0]


def summarize_chain(model: Any = None, **kwargs: Any) -> SummarizeChain:
    """Map-reduce summariser over `model` (default: the built-in local chat model)."""
    if model is None:
        from agentkit.models import LocalChatModel

        model = LocalChatModel(max_new_tokens=120)
    return SummarizeChain(model, **kwargs)

"""What part of a stored conversation is sent with the next message: `window` (the last k turns) or
`summary` (older turns folded into a running summary by a chat model, under a token budget)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.errors import BadInputError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from agentkit.memory.store import ConversationStore

TokenCounter = Callable[[Sequence[BaseMessage]], int]
SUMMARY_PREFIX = "Summary of the earlier conversation: "


class MemoryStrategy(BaseModel):
    """One strategy: a config (pydantic, extra="forbid") plus `context`, the messages to send."""

    model_config = ConfigDict(extra="forbid")
    needs_summarizer: ClassVar[bool] = False

    strategy: str

    def context(
        self,
        store: ConversationStore,
        session: str,
        *,
        summarizer: BaseChatModel | None,
        count_tokens: TokenCounter,
    ) -> list[BaseMessage]:
        raise NotImplementedError


def split_turns(rows: Sequence[tuple[int, BaseMessage]]) -> list[list[tuple[int, BaseMessage]]]:
    """Group (id, message) rows into turns; a turn opens with a user message (and holds the replies,
    tool calls and tool results that follow it)."""
    turns: list[list[tuple[int, BaseMessage]]] = []
    for row in rows:
        if isinstance(row[1], HumanMessage) or not turns:
            turns.append([])
        turns[-1].append(row)
    return turns


def _flat(turns: Sequence[Sequence[tuple[int, BaseMessage]]]) -> list[BaseMessage]:
    return [message for turn in turns for _, message in turn]


class WindowMemory(MemoryStrategy):
    """Send the last `k` turns."""

    strategy: Literal["window"] = "window"
    k: int = Field(
        default=8, ge=1, description="turns sent with each message; a turn opens with a user message"
    )

    def context(
        self,
        store: ConversationStore,
        session: str,
        *,
        summarizer: BaseChatModel | None,
        count_tokens: TokenCounter,
    ) -> list[BaseMessage]:
        return _flat(split_turns(store.rows(session))[-self.k :])


class SummaryMemory(MemoryStrategy):
    """Send a running summary plus the newest turns that fit in `max_tokens`.

    When the unsummarised turns outgrow the budget, the oldest are folded into the summary by the
    summarizer (a chat model) with the `prompt` template; the summary itself is held to
    `summary_tokens`. The full log stays in the store: only what is sent shrinks.
    """

    needs_summarizer: ClassVar[bool] = True

    strategy: Literal["summary"] = "summary"
    max_tokens: int = Field(default=1024, ge=32, description="budget for the summary plus the turns sent")
    summary_tokens: int | None = Field(
        default=None, ge=8, description="cap on the summary itself; default max_tokens // 4"
    )
    keep_last_turns: int = Field(default=1, ge=0, description="newest turns never folded, even over budget")
    prompt: str = Field(
        default="conversation_summary", description="prompt library reference for the summarizer"
    )

    @model_validator(mode="after")
    def _check_budget(self) -> SummaryMemory:
        if self.summary_tokens is not None and self.summary_tokens >= self.max_tokens:
            raise ValueError(
                f"summary_tokens ({self.summary_tokens}) must be below max_tokens ({self.max_tokens}): "
                "the turns need room too"
            )
        return self

    @property
    def summary_budget(self) -> int:
        return self.summary_tokens if self.summary_tokens is not None else self.max_tokens // 4

    def context(
        self,
        store: ConversationStore,
        session: str,
        *,
        summarizer: BaseChatModel | None,
        count_tokens: TokenCounter,
    ) -> list[BaseMessage]:
        summary, through = store.summary(session)
        turns = split_turns(store.rows(session, after_id=through))
        head = [SystemMessage(SUMMARY_PREFIX + summary)] if summary else []
        if count_tokens(head + _flat(turns)) <= self.max_tokens:
            return head + _flat(turns)
        # Keep the newest turns that fit next to a full-size summary; fold everything older.
        keep = max(len(turns) - self.keep_last_turns, 0)
        while keep > 0 and count_tokens(_flat(turns[keep - 1 :])) + self.summary_budget <= self.max_tokens:
            keep -= 1
        fold, kept = turns[:keep], turns[keep:]
        if not fold:
            return head + _flat(kept)
        if summarizer is None:
            raise BadInputError(
                "The summary memory strategy needs a chat model to write summaries.",
                fix="pass summarizer=<chat model> to with_memory / ConversationMemory.",
            )
        summary = self._summarize(summarizer, summary, _flat(fold), count_tokens)
        store.set_summary(session, summary, through_id=fold[-1][-1][0])
        return [SystemMessage(SUMMARY_PREFIX + summary)] + _flat(kept)

    def _summarize(
        self, summarizer: BaseChatModel, summary: str, messages: list[BaseMessage], count_tokens: TokenCounter
    ) -> str:
        from langchain_core.messages import get_buffer_string

        from agentkit.prompts import load_prompt

        lines = get_buffer_string(messages, human_prefix="User", ai_prefix="Assistant")
        # ~0.75 English words per token: ask for words, since a model cannot count its tokens.
        max_words = max(8, self.summary_budget * 3 // 4)
        reply = (load_prompt(self.prompt) | summarizer).invoke(
            {"summary": summary, "new_lines": lines, "max_words": max_words}
        )
        text = reply.text.strip() if isinstance(reply, BaseMessage) else str(reply).strip()
        words = text.split()
        # A small model overshoots the word limit; cut 10% at a time until the summary fits.
        while words and count_tokens([SystemMessage(SUMMARY_PREFIX + " ".join(words))]) > self.summary_budget:
            words = words[: int(len(words) * 0.9)]
        return " ".join(words)


# ---- the extension point ---------------------------------------------------------------------
_STRATEGIES: dict[str, type[MemoryStrategy]] = {}


def register_memory_strategy(cls: type[MemoryStrategy]) -> type[MemoryStrategy]:
    """Add a strategy class; its `strategy` field's default is its name, unique across strategies."""
    name = cls.model_fields["strategy"].default if issubclass(cls, MemoryStrategy) else None
    if not isinstance(name, str) or not name:
        raise BadInputError(
            f"{cls.__name__} is not a memory strategy with a name.",
            fix='subclass MemoryStrategy and declare `strategy: Literal["<name>"] = "<name>"`.',
        )
    if name in _STRATEGIES:
        raise BadInputError(
            f"Memory strategy {name!r} is already registered (by {_STRATEGIES[name].__name__}).",
            fix="give the new strategy another name.",
        )
    _STRATEGIES[name] = cls
    return cls


def memory_strategies() -> dict[str, type[MemoryStrategy]]:
    return dict(_STRATEGIES)


def memory_strategy(config: MemoryStrategy | str | dict[str, Any] | None) -> MemoryStrategy:
    """A strategy from itself, its name (`"window"`) or a config dict (`{"strategy": "window", "k": 4}`)."""
    if isinstance(config, MemoryStrategy):
        return config
    data: dict[str, Any] = (
        {"strategy": "window"}
        if config is None
        else ({"strategy": config} if isinstance(config, str) else dict(config))
    )
    cls = _STRATEGIES.get(data.get("strategy", ""))
    if cls is None:
        raise BadInputError(
            f"Unknown memory strategy {data.get('strategy')!r}; known: {', '.join(sorted(_STRATEGIES))}.",
            fix="use one of those, or register_memory_strategy(YourStrategy) first.",
        )
    return cls.model_validate(data)


register_memory_strategy(WindowMemory)
register_memory_strategy(SummaryMemory)

"""`ConversationMemory` (store + strategy) and `with_memory`: wrap any chat model or chain so each call
sends the session's remembered context and appends the new turn (input and reply) to the store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    message_chunk_to_message,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, run_in_executor

from agentkit.errors import BadInputError
from agentkit.memory.store import ConversationStore, validate_session
from agentkit.memory.strategies import MemoryStrategy, TokenCounter, memory_strategy

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


class ConversationMemory:
    """A store and a strategy: `load(session)` gives the messages to send, `save` appends a turn.

    `count_tokens` defaults to langchain's approximation (~4 characters a token); pass an exact
    counter (messages -> int) when a budget must be tight.
    """

    def __init__(
        self,
        strategy: MemoryStrategy | str | dict[str, Any] | None = None,
        *,
        store: ConversationStore | str | Path | None = None,
        summarizer: BaseChatModel | None = None,
        count_tokens: TokenCounter | None = None,
    ) -> None:
        from langchain_core.messages.utils import count_tokens_approximately

        self.strategy = memory_strategy(strategy)
        self.store = store if isinstance(store, ConversationStore) else ConversationStore(store)
        self.summarizer = summarizer
        self.count_tokens = count_tokens or count_tokens_approximately
        if self.strategy.needs_summarizer and summarizer is None:
            raise BadInputError(
                f"The {self.strategy.strategy!r} memory strategy needs a chat model to write summaries.",
                fix="pass summarizer=<chat model> (with_memory uses the wrapped model when it is one).",
            )

    def load(self, session: str) -> list[BaseMessage]:
        return self.strategy.context(
            self.store, validate_session(session), summarizer=self.summarizer, count_tokens=self.count_tokens
        )

    def save(self, session: str, messages: list[BaseMessage]) -> None:
        self.store.append(session, messages)


def _as_messages(value: Any, what: str) -> list[BaseMessage]:
    from langchain_core.messages import convert_to_messages

    if isinstance(value, str):
        return [HumanMessage(value)]
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, (list, tuple)):
        return convert_to_messages(value)
    raise BadInputError(
        f"Memory cannot read the {what} {type(value).__name__}; it needs text, a message or a list of messages.",
        fix="set input_messages_key / output_messages_key to the dict key that holds the messages.",
    )


class RunnableWithMemory(Runnable[Any, Any]):
    """Any runnable with conversation memory, in the spirit of langchain's `RunnableWithMessageHistory`
    (deprecated in langchain-core 1.3), over a `ConversationMemory`.

    The session is fixed at construction or read per call from `config["configurable"]["session_id"]`.
    Inputs are text / messages, or a dict whose `input_messages_key` holds them; the remembered
    context goes in front of them, or under `history_messages_key` (a prompt placeholder). After
    the call the new input messages and the reply are appended; a stream is saved once it ends.
    """

    def __init__(
        self,
        bound: Runnable[Any, Any] | Callable[[Any], Any],
        memory: ConversationMemory,
        *,
        session: str | None = None,
        input_messages_key: str | None = None,
        history_messages_key: str | None = None,
        output_messages_key: str | None = None,
    ) -> None:
        if history_messages_key and not input_messages_key:
            raise BadInputError(
                "history_messages_key needs input_messages_key: memory must know which key holds the new message.",
                fix="pass input_messages_key='<the key of the user message>' too.",
            )
        from langchain_core.runnables.base import coerce_to_runnable

        self.bound = coerce_to_runnable(bound)  # a plain function works too
        self.memory = memory
        self.session = validate_session(session) if session is not None else None
        self.input_messages_key = input_messages_key
        self.history_messages_key = history_messages_key
        self.output_messages_key = output_messages_key

    # ---- one turn: load before the call, save after it --------------------------------------
    def _session(self, config: RunnableConfig) -> str:
        session = self.session or config.get("configurable", {}).get("session_id")
        if not session:
            raise BadInputError(
                "No memory session for this call.",
                fix="pass session='NAME' to with_memory, or config={'configurable': {'session_id': 'NAME'}}.",
            )
        return validate_session(session)

    def _begin(self, input: Any, config: RunnableConfig) -> tuple[str, list[BaseMessage], Any]:
        """(session, new input messages, the input for the bound runnable)."""
        session = self._session(config)
        key = self.input_messages_key
        if key is not None and (not isinstance(input, dict) or key not in input):
            raise BadInputError(
                f"Memory expects a dict input with key {key!r}; got {type(input).__name__}.",
                fix=f"invoke with {{{key!r}: 'your message', ...}}.",
            )
        new = _as_messages(input[key] if key else input, "input")
        context = self.memory.load(session)
        if key is None:
            return session, new, context + new
        if self.history_messages_key:
            return session, new, {**input, self.history_messages_key: context}
        return session, new, {**input, key: context + new}

    def _finish(self, session: str, new: list[BaseMessage], output: Any) -> None:
        if isinstance(output, dict):
            key = self.output_messages_key or ("output" if "output" in output else None)
            if key is None or key not in output:
                raise BadInputError(
                    f"Memory cannot find the reply in an output dict with keys {sorted(output)}.",
                    fix="pass output_messages_key='<the key that holds the reply>'.",
                )
            output = output[key]
        if isinstance(output, str):
            reply: list[BaseMessage] = [AIMessage(output)]
        else:
            reply = _as_messages(output, "output")
        reply = [message_chunk_to_message(m) if isinstance(m, BaseMessageChunk) else m for m in reply]
        self.memory.save(session, new + reply)

    # ---- the Runnable surface ---------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        session, new, bound_input = self._begin(input, config)
        output = self.bound.invoke(bound_input, config, **kwargs)
        self._finish(session, new, output)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        # Loading may call the summarizer and SQLite blocks: both run off the event loop.
        session, new, bound_input = await run_in_executor(config, self._begin, input, config)
        output = await self.bound.ainvoke(bound_input, config, **kwargs)
        await run_in_executor(config, self._finish, session, new, output)
        return output

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        config = ensure_config(config)
        session, new, bound_input = self._begin(input, config)
        final = None
        for chunk in self.bound.stream(bound_input, config, **kwargs):
            final = _add(final, chunk)
            yield chunk
        self._finish(session, new, final)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        config = ensure_config(config)
        session, new, bound_input = await run_in_executor(config, self._begin, input, config)
        final = None
        async for chunk in self.bound.astream(bound_input, config, **kwargs):
            final = _add(final, chunk)
            yield chunk
        await run_in_executor(config, self._finish, session, new, final)


def _add(total: Any, chunk: Any) -> Any:
    """Chunks add up (AIMessageChunk + AIMessageChunk, str + str); anything else: the last one wins."""
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:
        return chunk


def with_memory(
    runnable: Runnable[Any, Any] | Callable[[Any], Any],
    strategy: MemoryStrategy | str | dict[str, Any] | None = None,
    *,
    session: str | None = None,
    store: ConversationStore | str | Path | None = None,
    summarizer: BaseChatModel | None = None,
    count_tokens: TokenCounter | None = None,
    input_messages_key: str | None = None,
    history_messages_key: str | None = None,
    output_messages_key: str | None = None,
) -> RunnableWithMemory:
    """Wrap a chat model or chain with SQLite-backed conversation memory.

    Example:
        ```python
        llm = LocalChatModel()
        chat = with_memory(llm, WindowMemory(k=4), session="ada")
        chat.invoke("My name is Ada.")
        chat.invoke("What is my name?")  # sent with the first turn

        summarised = with_memory(llm, SummaryMemory(max_tokens=512))  # the model also summarises
        summarised.invoke("hi", config={"configurable": {"session_id": "s2"}})
        ```
    """
    from langchain_core.language_models import BaseChatModel

    strategy = memory_strategy(strategy)
    if summarizer is None and strategy.needs_summarizer and isinstance(runnable, BaseChatModel):
        summarizer = runnable
    memory = ConversationMemory(strategy, store=store, summarizer=summarizer, count_tokens=count_tokens)
    return RunnableWithMemory(
        runnable,
        memory,
        session=session,
        input_messages_key=input_messages_key,
        history_messages_key=history_messages_key,
        output_messages_key=output_messages_key,
    )

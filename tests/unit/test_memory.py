"""Conversation memory: the SQLite store, window and summary strategies, and `with_memory`.

Fake chat models stand in for the LLM: what is under test is bookkeeping (what is stored, what is
sent, what is folded into the summary), not the text a model writes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from pydantic import Field, ValidationError

from agentkit.errors import BadInputError
from agentkit.memory import (
    ConversationMemory,
    ConversationStore,
    MemoryStrategy,
    SummaryMemory,
    WindowMemory,
    memory_strategy,
    register_memory_strategy,
    sqlite_checkpointer,
    with_memory,
)
from agentkit.memory.strategies import SUMMARY_PREFIX

ROOT = Path(__file__).resolve().parents[2]


class RecordingChat(BaseChatModel):
    """Replies "reply N" and records every message list it is sent."""

    calls: list[list[BaseMessage]] = Field(default_factory=list)
    replies: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls.append(list(messages))
        text = self.replies.pop(0) if self.replies else f"reply {len(self.calls)}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


@pytest.fixture()
def store(tmp_path: Path) -> ConversationStore:
    return ConversationStore(tmp_path / "sessions.sqlite")


def turns(n: int, words: int = 1) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for i in range(1, n + 1):
        out += [HumanMessage(f"question {i} " + "word " * words), AIMessage(f"answer {i} " + "word " * words)]
    return out


# ---- the store ---------------------------------------------------------------------------------
def test_store_round_trips_messages_per_session(store: ConversationStore) -> None:
    call = {"name": "add", "args": {"a": 1}, "id": "c1", "type": "tool_call"}
    store.append(
        "a", [HumanMessage("hi"), AIMessage("", tool_calls=[call]), ToolMessage("2", tool_call_id="c1")]
    )
    store.append("b", [HumanMessage("other")])
    store.append("a", [AIMessageChunk(content="done")])  # a streamed reply is stored as a message
    got = store.messages("a")
    assert [type(m) for m in got] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert got[1].tool_calls[0]["args"] == {"a": 1} and got[3].content == "done"
    assert store.sessions() == ["a", "b"]
    store.clear("a")
    assert store.messages("a") == [] and store.sessions() == ["b"]


def test_summary_only_moves_forward(store: ConversationStore) -> None:
    assert store.summary("s") == ("", 0)
    store.set_summary("s", "up to 4", 4)
    store.set_summary("s", "up to 2 (a slower process)", 2)
    assert store.summary("s") == ("up to 4", 4)


def test_bad_session_name_is_bad_input(store: ConversationStore) -> None:
    with pytest.raises(BadInputError, match="Invalid session name"):
        store.append("", [HumanMessage("x")])


def test_two_processes_append_to_one_store(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    code = textwrap.dedent(f"""
        import sys
        from langchain_core.messages import HumanMessage, AIMessage
        from agentkit.memory import ConversationStore
        store = ConversationStore({str(path)!r})
        for i in range(40):
            store.append("shared", [HumanMessage(f"{{sys.argv[1]}} q{{i}}"), AIMessage(f"{{sys.argv[1]}} a{{i}}")])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, tag], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for tag in ("p1", "p2")]  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    messages = ConversationStore(path).messages("shared")
    assert len(messages) == 160
    # A turn is appended in one transaction: every question is directly followed by its answer.
    for question, answer in zip(messages[::2], messages[1::2], strict=True):
        assert question.content.replace(" q", " a") == answer.content
    for tag in ("p1", "p2"):
        assert [m.content for m in messages if m.content.startswith(f"{tag} q")] == [
            f"{tag} q{i}" for i in range(40)
        ]


# ---- window -------------------------------------------------------------------------------------
def test_window_sends_the_last_k_turns(store: ConversationStore) -> None:
    store.append("s", turns(5))
    assert [m.content for m in WindowMemory(k=2).context(store, "s", summarizer=None, count_tokens=len)] == [
        "question 4 word ",
        "answer 4 word ",
        "question 5 word ",
        "answer 5 word ",
    ]


def test_window_keeps_tool_messages_with_their_turn(store: ConversationStore) -> None:
    call = {"name": "add", "args": {}, "id": "c1", "type": "tool_call"}
    store.append("s", [HumanMessage("old"), AIMessage("x"), HumanMessage("sum?"), AIMessage("", tool_calls=[call]),
                       ToolMessage("3", tool_call_id="c1"), AIMessage("3")])  # fmt: skip
    sent = WindowMemory(k=1).context(store, "s", summarizer=None, count_tokens=len)
    assert [type(m) for m in sent] == [HumanMessage, AIMessage, ToolMessage, AIMessage]


def test_with_memory_second_call_sees_the_first_turn(store: ConversationStore) -> None:
    model = RecordingChat(calls=[])
    chat = with_memory(model, WindowMemory(k=4), session="ada", store=store)
    chat.invoke("My name is Ada.")
    chat.invoke("What is my name?")
    assert [m.content for m in model.calls[1]] == ["My name is Ada.", "reply 1", "What is my name?"]
    assert [m.content for m in store.messages("ada")] == [
        "My name is Ada.",
        "reply 1",
        "What is my name?",
        "reply 2",
    ]
    # A new wrapper (as in a new process) resumes from the store.
    again = with_memory(RecordingChat(calls=[]), "window", session="ada", store=store)
    again.invoke("And again?")
    assert len(store.messages("ada")) == 6


def test_stream_saves_the_whole_reply_once_it_ends(store: ConversationStore) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage("three word reply")]))
    chat = with_memory(model, session="s", store=store)
    chunks = list(chat.stream("hi"))
    assert len(chunks) > 1  # it really streamed
    assert [m.content for m in store.messages("s")] == ["hi", "three word reply"]
    assert type(store.messages("s")[1]) is AIMessage


async def test_async_invoke_and_stream_save_turns(store: ConversationStore) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage("one"), AIMessage("two words")]))
    chat = with_memory(model, session="s", store=store)
    await chat.ainvoke("first")
    [chunk async for chunk in chat.astream("second")]
    assert [m.content for m in store.messages("s")] == ["first", "one", "second", "two words"]


def test_session_from_config_and_missing_session(store: ConversationStore) -> None:
    chat = with_memory(RecordingChat(calls=[]), store=store)
    chat.invoke("to s1", config={"configurable": {"session_id": "s1"}})
    assert store.messages("s1")[0].content == "to s1"
    with pytest.raises(BadInputError, match="session_id"):
        chat.invoke("nowhere")


def test_prompt_chain_with_history_placeholder(store: ConversationStore) -> None:
    model = RecordingChat(calls=[])
    prompt = ChatPromptTemplate(
        [("system", "Be {tone}."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    chain = with_memory(prompt | model, session="p", store=store,
                        input_messages_key="question", history_messages_key="history")  # fmt: skip
    chain.invoke({"question": "one?", "tone": "kind"})
    chain.invoke({"question": "two?", "tone": "kind"})
    assert [m.content for m in model.calls[1]] == ["Be kind.", "one?", "reply 1", "two?"]
    # Only the conversation is stored: not the system prompt, not the other variables.
    assert [m.content for m in store.messages("p")] == ["one?", "reply 1", "two?", "reply 2"]


def test_dict_output_needs_a_key(store: ConversationStore) -> None:
    chain = with_memory(lambda messages: {"answer": "x", "sources": []}, session="d", store=store)
    with pytest.raises(BadInputError, match="output_messages_key"):
        chain.invoke("q")
    keyed = with_memory(lambda messages: {"answer": "x", "sources": []}, session="d", store=store,
                        output_messages_key="answer")  # fmt: skip
    keyed.invoke("q")
    assert [m.content for m in store.messages("d")] == ["q", "x"]


# ---- summary (fake summarizer) -------------------------------------------------------------------
def test_summary_with_fake_model_folds_old_turns_under_budget(store: ConversationStore) -> None:
    store.append("s", turns(6, words=30))  # ~ 6 turns x 2 x 45 tokens: over a 160-token budget
    summarizer = RecordingChat(calls=[], replies=["Ada asked six questions."])
    strategy = SummaryMemory(max_tokens=160, keep_last_turns=1)
    memory = ConversationMemory(strategy, store=store, summarizer=summarizer)
    sent = memory.load("s")
    assert (
        isinstance(sent[0], SystemMessage) and sent[0].content == SUMMARY_PREFIX + "Ada asked six questions."
    )
    assert sent[-1].content.startswith("answer 6") and memory.count_tokens(sent) <= 160
    # The summarizer got the built-in conversation_summary prompt with the folded turns as lines.
    (prompt,) = summarizer.calls
    assert "running summary" in prompt[0].content and "User: question 1" in prompt[1].content
    folded = [m for m in store.messages("s") if m.content in prompt[1].content]
    summary, through = store.summary("s")
    assert summary == "Ada asked six questions." and through == len(folded)  # ids start at 1
    assert len(store.messages("s")) == 12  # the full log stays
    # Nothing new to fold: the next load reuses the stored summary without calling the model.
    assert memory.load("s") == sent and len(summarizer.calls) == 1


def test_summary_with_fake_model_is_cut_to_its_budget(store: ConversationStore) -> None:
    store.append("s", turns(4, words=40))
    summarizer = RecordingChat(calls=[], replies=["blah " * 500])
    memory = ConversationMemory(
        SummaryMemory(max_tokens=200, summary_tokens=40), store=store, summarizer=summarizer
    )
    sent = memory.load("s")
    assert memory.count_tokens(sent[:1]) <= 40 < memory.count_tokens([SystemMessage("blah " * 500)])


def test_summary_with_fake_model_under_budget_sends_everything(store: ConversationStore) -> None:
    store.append("s", turns(2))
    summarizer = RecordingChat(calls=[])
    sent = ConversationMemory(SummaryMemory(), store=store, summarizer=summarizer).load("s")
    assert len(sent) == 4 and summarizer.calls == []


def test_with_memory_summary_uses_the_wrapped_model_as_summarizer(store: ConversationStore) -> None:
    model = RecordingChat(calls=[], replies=["summary text", "final reply"])
    store.append("s", turns(5, words=40))
    chat = with_memory(model, SummaryMemory(max_tokens=120, keep_last_turns=1), session="s", store=store)
    assert chat.invoke("next?").content == "final reply"
    assert model.calls[1][0].content == SUMMARY_PREFIX + "summary text"
    assert model.calls[1][-1].content == "next?"


def test_summary_strategy_without_a_summarizer(store: ConversationStore) -> None:
    with pytest.raises(BadInputError, match="summarizer"):
        ConversationMemory("summary", store=store)
    with pytest.raises(BadInputError, match="summarizer"):
        with_memory(lambda x: x, "summary", store=store)


# ---- strategies as configs -----------------------------------------------------------------------
def test_strategy_configs_validate() -> None:
    assert memory_strategy({"strategy": "window", "k": 3}) == WindowMemory(k=3)
    assert isinstance(memory_strategy("summary"), SummaryMemory)
    with pytest.raises(ValidationError, match="kk"):
        memory_strategy({"strategy": "window", "kk": 3})
    with pytest.raises(BadInputError, match="known: summary, window"):
        memory_strategy("forever")
    with pytest.raises(ValidationError, match="summary_tokens"):
        SummaryMemory(max_tokens=100, summary_tokens=100)


def test_register_memory_strategy_rejects_duplicates_and_nameless() -> None:
    with pytest.raises(BadInputError, match="already registered"):
        register_memory_strategy(WindowMemory)

    class Nameless(MemoryStrategy):
        pass

    with pytest.raises(BadInputError, match="Literal"):
        register_memory_strategy(Nameless)


# ---- LangGraph checkpointer ------------------------------------------------------------------------
def test_sqlite_checkpointer_persists_graph_state(tmp_path: Path) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    def respond(state: MessagesState) -> dict:
        return {"messages": [AIMessage(f"seen {len(state['messages'])}")]}

    def build(saver: Any) -> Any:
        graph = StateGraph(MessagesState)
        graph.add_node("respond", respond)
        graph.add_edge(START, "respond")
        graph.add_edge("respond", END)
        return graph.compile(checkpointer=saver)

    config = {"configurable": {"thread_id": "t1"}}
    first = sqlite_checkpointer(tmp_path / "cp.sqlite")
    build(first).invoke({"messages": [HumanMessage("a")]}, config)
    first.conn.close()
    second = sqlite_checkpointer(tmp_path / "cp.sqlite")
    out = build(second).invoke({"messages": [HumanMessage("b")]}, config)
    second.conn.close()
    assert [m.content for m in out["messages"]] == ["a", "seen 1", "b", "seen 3"]

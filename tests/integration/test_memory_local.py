"""Memory and prompts on the real built-in models: `agentkit chat --session` resumed by a second
process, a summary written by SmolLM2, vector recall with MiniLM, a library prompt through the chat template."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agentkit.memory import ConversationStore, SummaryMemory, VectorMemory, with_memory
from agentkit.memory.strategies import SUMMARY_PREFIX
from agentkit.models import LocalChatModel
from agentkit.models.messages import to_chat_dicts
from agentkit.models.runtime import LoadedModel
from agentkit.prompts import load_prompt
from agentkit.registry import Registry

pytestmark = pytest.mark.integration
MODEL = "smollm2-135m-instruct"


def chat(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "agentkit", "chat", MODEL, "--max-new-tokens", "8", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)


def encoded(messages: list) -> list[int]:
    """The token ids LocalChatModel sends for `messages`: rendered by the model's own chat template."""
    return LoadedModel.get(MODEL, Registry.default()).encode_chat(to_chat_dicts(messages))


def test_chat_session_resumes_in_a_new_process(registry: Registry) -> None:
    session = f"test-{uuid.uuid4().hex[:8]}"
    store = ConversationStore()  # $AGENTKIT_HOME/memory/sessions.sqlite, as the CLI uses
    try:
        first = chat("--session", session, "-m", "My name is Ada.")
        assert first.returncode == 0, first.stderr
        assert f"session '{session}': 0 earlier messages" in first.stderr
        second = chat("--session", session, "-m", "What is my name?")
        assert second.returncode == 0, second.stderr
        assert f"session '{session}': 2 earlier messages" in second.stderr

        stored = store.messages(session)
        assert [type(m) for m in stored] == [HumanMessage, AIMessage, HumanMessage, AIMessage]
        assert [stored[0].content, stored[2].content] == ["My name is Ada.", "What is my name?"]
        assert stored[1].content.strip() and stored[1].content in first.stdout
        # The second prompt was the first turn plus the new message: its token count matches that
        # conversation exactly, and not the new message alone.
        sent = stored[3].usage_metadata["input_tokens"]
        assert sent == len(encoded(stored[:3])) > len(encoded(stored[2:3]))
    finally:
        store.clear(session)


def test_bad_session_name_is_exit_2_before_loading(registry: Registry) -> None:
    out = chat("--session", " ", "-m", "hi")
    assert (
        out.returncode == 2 and "Invalid session name" in out.stderr and "Loading weights" not in out.stderr
    )


def test_summary_memory_with_the_local_chat_model(tmp_path: Path, registry: Registry) -> None:
    store = ConversationStore(tmp_path / "sessions.sqlite")
    store.append("ada", [
        HumanMessage("My name is Ada and I live in Paris."), AIMessage("Nice to meet you, Ada."),
        HumanMessage("I have a cat called Miso."), AIMessage("Miso is a lovely name for a cat."),
        HumanMessage("I work as a nurse at night."), AIMessage("That is an important job."),
    ])  # fmt: skip
    seen: list = []
    llm = LocalChatModel(max_new_tokens=40)
    recorder = (lambda messages: seen.append(messages) or messages) | llm
    # ~75 tokens stored > a 64-token budget: the two older turns are folded by SmolLM2 itself.
    strategy = SummaryMemory(max_tokens=64, summary_tokens=40, keep_last_turns=1)
    chat_with_memory = with_memory(recorder, strategy, session="ada", store=store, summarizer=llm)
    reply = chat_with_memory.invoke("What is my cat called?")

    summary, through = store.summary("ada")
    assert summary.strip() and through == 4  # ids 1-4: the first two turns
    sent = seen[0]
    assert isinstance(sent[0], SystemMessage) and sent[0].content == SUMMARY_PREFIX + summary
    assert [m.content for m in sent[1:]] == [
        "I work as a nurse at night.", "That is an important job.", "What is my cat called?",
    ]  # fmt: skip
    assert chat_with_memory.memory.count_tokens(sent[:1]) <= 40
    assert len(store.messages("ada")) == 8 and store.messages("ada")[-1].content == reply.content


def test_vector_memory_with_local_embeddings(tmp_path: Path, registry: Registry) -> None:
    memory = VectorMemory("facts", root=tmp_path)
    for fact in (
        "The user's cat is called Miso.",
        "The quarterly report is due on Friday.",
        "The office wifi password is written on the fridge.",
    ):
        memory.remember(fact)
    again = VectorMemory("facts", root=tmp_path)  # a later session
    assert (
        again.recall("What pet does the user have?", k=1)[0].page_content == "The user's cat is called Miso."
    )
    assert again.recall("When is the report deadline?", k=1)[0].page_content.startswith(
        "The quarterly report"
    )
    manifest = json.loads((tmp_path / "facts" / "memory.json").read_text())
    assert manifest["embeddings"] == "LocalEmbeddings:minilm-l6" and manifest["dimension"] == 384


def test_library_prompt_is_rendered_by_the_model_chat_template(registry: Registry) -> None:
    prompt = load_prompt("classify")
    values = {"text": "I was charged twice for one order.", "labels": ["billing", "shipping"]}
    reply = (prompt | LocalChatModel(max_new_tokens=4)).invoke(values)
    ids = encoded(prompt.invoke(values).to_messages())
    assert reply.usage_metadata["input_tokens"] == len(ids)
    text = LoadedModel.get(MODEL, Registry.default()).tokenizer.decode(ids)
    # ChatML: the few-shot pairs are real assistant turns, then the generation prompt opens one more.
    assert "<|im_start|>system\nYou are a text classifier." in text
    assert "<|im_start|>assistant\nbilling<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")

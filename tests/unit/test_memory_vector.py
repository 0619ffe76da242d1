"""Long-term vector memory: remember / recall, persistence, sharing between processes, agent tools.

A bag-of-words embedding stands in for the real model, so which text is recalled is predictable.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings

from agentkit.errors import BadInputError
from agentkit.memory import VectorMemory

ROOT = Path(__file__).resolve().parents[2]


class WordEmbeddings(Embeddings):
    """Hashed bag of words in 64 dimensions: texts that share words are close."""

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * 64
        for word in text.lower().replace("?", "").replace(".", "").split():
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)


def memory(root: Path, name: str = "agent") -> VectorMemory:
    return VectorMemory(name, embeddings=WordEmbeddings(), root=root)


def test_recall_finds_the_closest_text_and_scores_it(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    assert mem.recall("anything") == [] and len(mem) == 0
    mem.remember("the cat is called miso", {"topic": "pets"})
    mem.remember("the meeting is on friday")
    mem.remember("the car is blue")
    best = mem.recall("what is the cat called", k=2)
    assert best[0].page_content == "the cat is called miso" and best[0].metadata["topic"] == "pets"
    assert best[0].metadata["score"] > best[1].metadata["score"] and "remembered_at" in best[0].metadata


def test_memory_persists_and_the_same_fact_is_kept_once(tmp_path: Path) -> None:
    first = memory(tmp_path)
    doc_id = first.remember("the sky is green here")
    assert first.remember("the sky is green here") == doc_id
    first.remember("water is wet")
    second = memory(tmp_path)  # as a new process would
    assert len(second) == 2
    assert second.recall("sky green", k=1)[0].page_content == "the sky is green here"
    manifest = json.loads((tmp_path / "agent" / "memory.json").read_text())
    assert manifest["format"] == "agentkit.vector_memory" and manifest["count"] == 2
    assert manifest["embeddings"] == "WordEmbeddings" and manifest["dimension"] == 64
    # Old snapshots are dropped: the current one and the one before it stay, nothing half-written.
    names = sorted(p.name for p in (tmp_path / "agent").iterdir())
    assert sum(n.startswith("snap-") for n in names) <= 2 and not any(n.endswith(".tmp") for n in names)
    assert not list((tmp_path / "agent").glob("*.pkl"))  # no pickle on disk


def test_an_instance_sees_what_another_remembered(tmp_path: Path) -> None:
    reader, writer = memory(tmp_path), memory(tmp_path)
    writer.remember("alpha beta")
    assert len(reader.recall("alpha")) == 1
    writer.remember("gamma delta")
    assert reader.recall("gamma", k=1)[0].page_content == "gamma delta"


def test_two_processes_remember_into_one_memory(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from tests.unit.test_memory_vector import memory
        from pathlib import Path
        mem = memory(Path({str(tmp_path)!r}))
        for i in range(6):
            mem.remember(f"{{sys.argv[1]}} fact number {{i}}")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, tag], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for tag in ("left", "right")]  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert len(memory(tmp_path)) == 12


def test_other_embeddings_are_refused(tmp_path: Path) -> None:
    memory(tmp_path).remember("x y z")

    class OtherEmbeddings(WordEmbeddings):
        pass

    with pytest.raises(BadInputError, match="built with WordEmbeddings, not OtherEmbeddings"):
        VectorMemory("agent", embeddings=OtherEmbeddings(), root=tmp_path).recall("x")


def test_tools_remember_and_recall(tmp_path: Path) -> None:
    remember, recall = memory(tmp_path).as_tools(k=1)
    assert (remember.name, recall.name) == ("remember", "recall")
    assert recall.invoke({"query": "anything"}) == "Nothing remembered yet."
    assert remember.invoke({"text": "the user likes tea"}) == "Remembered."
    assert recall.invoke({"query": "what does the user like"}) == "1. the user likes tea"


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="Invalid vector memory name"):
        VectorMemory("../escape", root=tmp_path)
    mem = memory(tmp_path)
    with pytest.raises(BadInputError, match="non-empty text"):
        mem.remember("  ")
    with pytest.raises(BadInputError, match="flat JSON values"):
        mem.remember("x", {"when": object()})  # type: ignore[dict-item]
    with pytest.raises(BadInputError, match="k must be at least 1"):
        mem.recall("x", k=0)


def test_clear_forgets_everything(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    mem.remember("one")
    mem.clear()
    assert len(mem) == 0 and mem.recall("one") == []

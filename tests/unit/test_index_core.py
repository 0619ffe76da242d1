"""Index add / search with a bag-of-words embedding: incremental re-runs, replace, prune, bad input,
crash leftovers, and dense / BM25 / hybrid / MMR / filters. Both backends run the same tests."""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from agentkit.errors import BadInputError
from agentkit.indexes import Index, create_index, list_indexes, open_index, remove_index
from agentkit.indexes.retrieval import reciprocal_rank_fusion
from tests.unit.test_index_loaders import make_pdf, write_corpus


class BagOfWords(Embeddings):
    """Hashed word counts: deterministic, and texts sharing words are close, so rankings mean something."""

    def __init__(self, dim: int = 128) -> None:
        self.dim, self.calls, self.texts = dim, 0, 0

    def _vector(self, text: str) -> list[float]:
        vector = np.zeros(self.dim)
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % self.dim] += 1.0
        norm = np.linalg.norm(vector)
        return (vector / norm if norm else vector).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls, self.texts = self.calls + 1, self.texts + len(texts)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


SMALL = {"chunk_size": 60, "chunk_overlap": 10}


@pytest.fixture(params=["faiss", "chroma"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def make_index(home: Path, backend: str = "faiss", name: str = "docs") -> Index:
    return create_index(name, embeddings=BagOfWords(), backend=backend, splitter=SMALL, home=home)


def consistent(index: Index) -> set[str]:
    """Vectors and manifest agree exactly; returns the chunk ids."""
    visible = index.manifest.visible_ids()
    assert index.backend.all_ids() == visible
    assert index.manifest.counts()["unswept_rows"] == 0
    return visible


def test_add_is_incremental_replaces_and_prunes(tmp_path: Path, backend: str) -> None:
    files = write_corpus(tmp_path / "corpus")
    index = make_index(tmp_path / "home", backend)
    first = index.add([tmp_path / "corpus"])
    assert first.indexed == 6 and first.skipped == [] and first.embedded == first.chunks_added > 6
    ids = consistent(index)
    docs = index.manifest.visible_chunks()
    assert {d.metadata["format"] for d in docs} == {"text", "markdown", "html", "json", "code-python", "pdf"}
    assert {d.metadata["page"] for d in docs if d.metadata["format"] == "pdf"} == {1, 2}
    assert all(
        {"source", "chunk_id", "position", "start_index", "content_hash", "source_hash"} <= set(d.metadata)
        for d in docs
    )

    calls = index.embeddings.calls
    again = index.add([tmp_path / "corpus"])
    assert (again.unchanged, again.indexed, again.embedded, index.embeddings.calls) == (6, 0, 0, calls)
    assert consistent(index) == ids

    old = {d.id for d in docs if d.source.endswith("dogs.md")}
    files["markdown"].write_text("# Dogs\n\nDogs bark at the mailman.\n\n## Walks\n\nDogs love long walks.\n")
    changed = index.add([tmp_path / "corpus"])
    assert changed.indexed == 1 and changed.unchanged == 5
    assert changed.reused >= 1 and changed.embedded < changed.chunks_added  # the untouched heading is reused
    now = consistent(index)
    assert not old & now and changed.chunks_removed == len(old)
    assert "long walks" in index.search("walks", mode="bm25", k=1)[0].page_content

    files["json"].unlink()
    kept = index.add([tmp_path / "corpus"])  # without --prune a deleted file's chunks stay
    assert kept.removed == 0 and any(d.metadata["format"] == "json" for d in index.manifest.visible_chunks())
    pruned = index.add([tmp_path / "corpus"], prune=True)
    assert pruned.removed == 1 and not any(
        d.metadata["format"] == "json" for d in index.manifest.visible_chunks()
    )
    consistent(index)
    index.close()


def test_same_source_twice_and_bad_files_leave_a_consistent_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    files = write_corpus(corpus)
    (corpus / "bad").mkdir()
    make_pdf(corpus / "bad" / "secret.pdf", ["classified"], password="pw")
    (corpus / "bad" / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage")
    (corpus / "bad" / "blob.txt").write_bytes(b"\x00\x01\x02\x03" * 64)
    (corpus / "bad" / "empty.md").write_bytes(b"")
    (corpus / "bad" / "latin1.txt").write_bytes("naïve façade".encode("latin-1"))
    index = make_index(tmp_path / "home")
    report = index.add([corpus, files["text"], files["text"]])
    assert report.indexed == 6 and report.duplicates == 2
    reasons = {Path(p).name: r for p, r in report.skipped}
    assert set(reasons) == {"secret.pdf", "broken.pdf", "blob.txt", "empty.md", "latin1.txt"}
    assert reasons["secret.pdf"].startswith("encrypted PDF") and "not UTF-8" in reasons["latin1.txt"]
    sources = {Path(s).name for s in index.manifest.sources()}
    assert sources == {p.name for p in files.values()}
    assert len(consistent(index)) == report.chunks_added

    files["text"].write_text("")  # emptied: its chunks go, the file is reported
    emptied = index.add([corpus])
    assert emptied.removed == 1 and "cats.txt" not in {Path(s).name for s in index.manifest.sources()}
    consistent(index)


def test_a_crash_mid_add_leaves_old_or_new_and_a_rerun_finishes(tmp_path: Path, backend: str) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(12):
        (corpus / f"f{n:02d}.txt").write_text(f"file {n} " + " ".join(f"word{n}x{i}" for i in range(40)))
    reference = make_index(tmp_path / "ref", backend)
    reference.add([corpus])
    expected = consistent(reference)

    index = make_index(tmp_path / "home", backend)
    embed = index.embeddings.embed_documents
    calls = {"n": 0}

    def dies_on_third_batch(texts: list[str]) -> list[list[float]]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if killed between two commits
        return embed(texts)

    index.embeddings.embed_documents = dies_on_third_batch  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        index.add([corpus], batch_size=10)
    partial = index.manifest.visible_ids()
    committed = len(index.manifest.sources())
    assert 0 < len(partial) < len(expected) and partial <= expected
    assert index.stats()["interrupted"]
    # A kill after vectors were written but before the manifest commit leaves invisible vectors.
    index.backend.add_vectors(["orphan"], ["x"], np.ones((1, 128), dtype=np.float32), [{"source": "x"}])
    assert "orphan" not in {d.id for d in index.search("x", mode="dense", k=50)}

    index.embeddings.embed_documents = embed  # type: ignore[method-assign]
    report = index.add([corpus], batch_size=10)
    assert report.repaired >= 1 and report.unchanged == committed  # finished files are not embedded again
    assert consistent(index) == expected and not index.stats()["interrupted"]


def test_retrieval_modes_filters_and_mmr(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    (corpus / "copy1.txt").write_text("Cats purr when they are happy and warm.")
    (corpus / "copy2.txt").write_text("Cats purr when they are happy and warm.")
    index = make_index(tmp_path / "home")
    index.add([corpus])
    for mode in ("dense", "bm25", "hybrid"):
        top = index.search("what do rabbits eat", mode=mode, k=3)
        assert top[0].page_content == "Rabbits eat carrots.", mode
        assert top[0].metadata["page"] == 2 and top[0].metadata["retrieval"] == mode
        assert [d.metadata["rank"] for d in top] == [1, 2, 3]
    hybrid = index.search("rabbits eat", k=2)[0].metadata
    assert {"dense_score", "bm25_score", "dense_rank", "bm25_rank"} <= set(hybrid)

    only_md = index.search("dogs eat", k=5, filter={"format": "markdown"})
    assert only_md and {d.metadata["format"] for d in only_md} == {"markdown"}
    for mode in ("dense", "bm25"):
        assert {
            d.metadata["format"]
            for d in index.search("eat", mode=mode, k=9, filter={"format": ["pdf", "json"]})
        } <= {"pdf", "json"}

    plain = index.search("cats purr happy", mode="dense", k=2)
    assert plain[0].page_content == plain[1].page_content  # the two copies
    diverse = index.search("cats purr happy", mode="dense", k=2, mmr=True, mmr_lambda=0.3)
    assert diverse[0].page_content != diverse[1].page_content

    retriever = index.as_retriever(mode="hybrid", k=3)
    assert len(retriever.invoke("cats")) == 3 and len(retriever.invoke("cats", k=1)) == 1
    assert len(asyncio.run(retriever.ainvoke("cats", k=2))) == 2
    with pytest.raises(BadInputError, match="topk"):
        retriever.invoke("cats", topk=2)
    with pytest.raises(ValueError, match="Unsupported filter"):
        index.search("cats", filter={"page": {"$gt": 1}})
    with pytest.raises(ValueError, match="mode"):
        index.search("cats", mode="sparse")
    with caplog.at_level(logging.WARNING, logger="agentkit.indexes.rerank"):
        reranked = index.search("cats", rerank="auto", k=2)  # this registry holds no cross-encoder
    assert len(reranked) == 2 and "rerank_score" not in reranked[0].metadata
    assert "no cross-encoder" in caplog.text


def test_reciprocal_rank_fusion_arithmetic() -> None:
    fused = dict(reciprocal_rank_fusion([[("a", 9.0), ("b", 5.0)], [("b", 0.7), ("c", 0.1)]], c=60))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61) and fused["a"] == pytest.approx(1 / 61)
    assert max(fused, key=fused.get) == "b"


def test_names_specs_and_missing_indexes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(BadInputError, match="No index 'nope'.*none yet"):
        open_index("nope", home=home)
    with pytest.raises(BadInputError, match="Invalid index name"):
        create_index("Bad Name", embeddings=BagOfWords(), home=home)
    with pytest.raises(BadInputError, match="Unknown index backend 'milvus'"):
        create_index("x", embeddings=BagOfWords(), backend="milvus", home=home)
    with pytest.raises(ValueError, match="hots"):
        create_index("x", embeddings=BagOfWords(), backend="chroma", backend_options={"hots": "a"}, home=home)
    assert list_indexes(home) == []  # none of the refusals left a folder behind

    make_index(home).close()
    with pytest.raises(BadInputError, match="already exists"):
        make_index(home)
    with pytest.raises(BadInputError, match=r"chunk_size: built with 60, asked for 500"):
        Index.open_or_create("docs", splitter={"chunk_size": 500}, home=home)
    with pytest.raises(BadInputError, match="custom embeddings"):
        open_index("docs", home=home)  # built with custom embeddings, opened without them

    class Other(BagOfWords):
        pass

    with pytest.raises(BadInputError, match=r"not .*Other"):
        open_index("docs", embeddings=Other(), home=home)
    assert open_index("docs", embeddings=BagOfWords(), home=home).search("anything") == []  # empty index
    remove_index("docs", home=home)
    assert list_indexes(home) == []
    with pytest.raises(BadInputError, match="No index 'docs'"):
        remove_index("docs", home=home)


def test_missing_paths_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    index = make_index(tmp_path / "home")
    with pytest.raises(BadInputError, match="no such file or folder"):
        index.add([tmp_path / "absent"])
    assert index.manifest.sources() == {} and index.stats()["last_add"] == {}


def test_a_second_writer_waits_for_the_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from filelock import Timeout

    index = make_index(tmp_path / "home")
    other = open_index("docs", embeddings=BagOfWords(), home=tmp_path / "home")
    with (
        index.write_lock(),
        caplog.at_level(logging.WARNING),
        pytest.raises(Timeout),
        other.write_lock(timeout=0.2),
    ):
        pass
    assert "being written by another process" in caplog.text
    with other.write_lock(timeout=0.2):  # released: the next writer gets it at once
        pass

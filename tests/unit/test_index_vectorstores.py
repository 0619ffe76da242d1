"""langchain-tests' VectorStore suite, once per index backend exposed as a LangChain VectorStore.

Embeddings are the suite's own DeterministicFakeEmbedding: the contract under test is storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from agentkit.indexes.backends import backend_names
from agentkit.indexes.backends.chroma.store import ChromaStore, chroma_where
from agentkit.indexes.backends.faiss.store import FaissStore


class TestFaissStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path: Path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = FaissStore.load(tmp_path / "faiss", embedding=self.get_embeddings())
        yield store
        store.close()


class TestChromaStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path: Path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = ChromaStore.connect("agentkit-standard", self.get_embeddings(), path=tmp_path / "chroma")
        yield store
        store.drop()
        store.close()


def test_both_backends_are_registered() -> None:
    assert {"faiss", "chroma"} <= set(backend_names())


def test_faiss_store_survives_reopen_and_rebuilds_a_missing_index_file(tmp_path: Path) -> None:
    store = FaissStore.load(tmp_path, embedding=VectorStoreIntegrationTests.get_embeddings())
    store.add_texts(["foo", "bar", "baz"], [{"n": 1}, {"n": 2}, {"n": 3}], ids=["1", "2", "3"])
    store.delete(["2"])
    store.flush()
    files = sorted(p.name for p in tmp_path.glob("vectors.*.faiss"))
    assert len(files) == 1  # older generations are removed
    store.close()

    again = FaissStore.load(tmp_path, embedding=VectorStoreIntegrationTests.get_embeddings())
    assert [d.id for d in again.similarity_search("baz", k=3)] == ["3", "1"]
    again.close()
    (tmp_path / files[0]).unlink()  # as after a crash before flush: rebuilt from SQLite, no embedding
    third = FaissStore.load(tmp_path, embedding=None)
    vector = third.get_vectors(["3"])["3"]
    assert third.search_vectors(vector, 1) == [("3", pytest.approx(1.0, abs=1e-5))]
    third.close()


def test_faiss_filter_is_applied_before_ranking(tmp_path: Path) -> None:
    store = FaissStore.in_memory(VectorStoreIntegrationTests.get_embeddings())
    store.add_texts(["foo", "bar", "baz"], [{"t": "a"}, {"t": "b"}, {"t": "b"}], ids=["1", "2", "3"])
    assert {d.id for d in store.similarity_search("foo", k=3, filter={"t": "b"})} == {"2", "3"}
    assert [d.id for d in store.similarity_search("foo", k=3, filter={"t": ["a"]})] == ["1"]
    assert store.similarity_search("foo", k=3, filter={"t": "zzz"}) == []


def test_a_second_handle_sees_the_first_ones_writes(tmp_path: Path) -> None:
    emb = VectorStoreIntegrationTests.get_embeddings()
    writer, reader = FaissStore.load(tmp_path, emb), FaissStore.load(tmp_path, emb)
    writer.add_texts(["foo"], ids=["1"])
    assert [d.id for d in reader.similarity_search("foo", k=1)] == ["1"]
    writer.add_texts(["bar"], ids=["2"])
    writer.delete(["1"])
    assert [d.id for d in reader.similarity_search("foo", k=2)] == ["2"]
    assert reader.all_ids() == {"2"}


def test_chroma_where_translation() -> None:
    assert chroma_where(None) is None
    assert chroma_where({"a": 1}) == {"a": 1}
    assert chroma_where({"a": 1, "b": ["x", "y"]}) == {"$and": [{"a": 1}, {"b": {"$in": ["x", "y"]}}]}


def test_chroma_vectors_round_trip(tmp_path: Path) -> None:
    store = ChromaStore.connect("agentkit-rt", None, path=tmp_path)
    vectors = np.eye(3, dtype=np.float32)
    store.add_vectors(["a", "b", "c"], ["A", "B", "C"], vectors, [{"k": 1}, {"k": 2}, {"k": 2}])
    assert store.all_ids() == {"a", "b", "c"}
    assert store.search_vectors(vectors[1], 1) == [("b", pytest.approx(1.0, abs=1e-5))]
    assert [i for i, _ in store.search_vectors(vectors[0], 3, {"k": 2})] in (["b", "c"], ["c", "b"])
    np.testing.assert_allclose(store.get_vectors(["c"])["c"], vectors[2])
    store.delete_ids(["a", "missing"])
    assert store.all_ids() == {"b", "c"}
    store.close()

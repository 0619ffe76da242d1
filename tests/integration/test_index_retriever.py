"""The hybrid retriever on the real minilm-l6: langchain-tests' retriever suite, a chain, the reranker.

The reranker test builds a one-output cross-encoder from MiniLM's encoder (its head is untrained:
the test checks the plumbing, not relevance), so `rerank="auto"` finds one in the registry.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from langchain_tests.integration_tests import RetrieversIntegrationTests

from agentkit.indexes import Index, IndexRetriever, create_index
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from tests.unit.test_index_loaders import write_corpus

pytestmark = pytest.mark.integration


@functools.cache
def _home() -> Path:
    """One registry + index for the whole module (the suite builds retrievers from properties)."""
    root = Path(tempfile.mkdtemp(prefix="agentkit-index-retriever-"))
    home = root / "home"
    Registry(home).create_entry(
        "minilm-l6", lambda stage: copy_hf_folder(Registry.default().path("minilm-l6"), stage)
    )
    write_corpus(root / "corpus")
    for n, animal in enumerate(["otters", "badgers", "hedgehogs", "foxes"]):
        (root / "corpus" / f"extra{n}.md").write_text(
            f"# {animal.title()}\n\n{animal.title()} live near rivers and woods."
        )
    index = create_index("zoo", splitter={"chunk_size": 200, "chunk_overlap": 20}, home=home)
    index.add([root / "corpus"])
    index.close()
    return home


@functools.cache
def _index() -> Index:
    return Index.open("zoo", home=_home())


@pytest.fixture(scope="module", autouse=True)
def _remove_the_module_home() -> Iterator[None]:
    yield
    if _index.cache_info().currsize:
        _index().close()
    if _home.cache_info().currsize:
        shutil.rmtree(_home().parent, ignore_errors=True)


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[IndexRetriever]:
        return IndexRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": _index(), "mode": "hybrid", "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "what do rabbits eat?"


def test_documents_carry_what_a_rag_chain_cites() -> None:
    retriever = _index().as_retriever(mode="hybrid", k=3)
    docs = retriever.invoke("Where do otters live?")
    assert docs[0].page_content.startswith("# Otters")
    meta = docs[0].metadata
    assert {"source", "chunk_id", "position", "start_index", "content_hash", "score", "rank"} <= set(meta)
    assert meta["source"].endswith("extra0.md") and docs[0].id == meta["chunk_id"]

    def cite(found: list[Document]) -> str:
        return "\n".join(
            f"[{Path(d.metadata['source']).name}#{d.metadata['position']}] {d.page_content}" for d in found
        )

    chain = retriever | RunnableLambda(cite)  # what chains/ composes with a prompt and a chat model
    assert "[rabbits.pdf#1] Rabbits eat carrots." in chain.invoke("what do rabbits eat?")
    mmr = _index().as_retriever(mode="dense", k=3, mmr=True).invoke("animals living near rivers")
    assert len({d.page_content for d in mmr}) == 3


def test_rerank_auto_uses_a_registry_cross_encoder(tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    registry = Registry(_home())
    if "tiny-cross-encoder" not in registry:
        torch.manual_seed(0)
        source = registry.path("minilm-l6")
        folder = tmp_path / "cross-encoder"
        BertForSequenceClassification.from_pretrained(source, num_labels=1).save_pretrained(folder)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
        registry.create_entry("tiny-cross-encoder", lambda stage: copy_hf_folder(folder, stage))
    index = Index.open("zoo", home=_home())
    docs = index.search("what do rabbits eat?", k=4, rerank="auto", fetch_k=8)
    scores = [d.metadata["rerank_score"] for d in docs]
    assert len(docs) == 4 and scores == sorted(scores, reverse=True)
    assert all("retrieval_score" in d.metadata for d in docs)
    assert index.reranker("auto").model_id == "tiny-cross-encoder"
    with pytest.raises(Exception, match="not a cross-encoder"):
        index.search("x", rerank="minilm-l6")
    index.close()


def test_token_splitter_counts_with_the_models_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from agentkit.errors import BadInputError

    registry = Registry(_home())
    doc = tmp_path / "long.md"
    doc.write_text(
        "\n\n".join(f"Section {n}. " + "Otters hold hands while sleeping in rivers. " * 9 for n in range(6))
    )
    index = create_index(
        "tokens", splitter={"kind": "tokens", "chunk_size": 64, "chunk_overlap": 8}, home=_home()
    )
    index.add([doc])
    tokenizer = Tokenizer.from_file(str(registry.path("minilm-l6") / "tokenizer.json"))
    tokenizer.no_padding()
    lengths = [
        len(tokenizer.encode(c.text, add_special_tokens=False).ids) for c in index.manifest.visible_chunks()
    ]
    assert 6 < len(lengths) < 20 and max(lengths) <= 64 and min(lengths) > 20
    index.close()
    with pytest.raises(BadInputError, match="does not fit minilm-l6's 256-token window"):
        create_index("too-long", splitter={"kind": "tokens", "chunk_size": 300}, home=_home())

"""Chains on the real built-in models: RAG with grammar-enforced citations and its "I don't know"
gate, map-reduce summaries, label choice by log-probability, routing to chains and adapters."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from agentkit.chains import Route, classify_chain, rag_chain, route_chain, summarize_chain
from agentkit.chains.rag import IDK
from agentkit.errors import BadInputError
from agentkit.models import LocalChatModel, LocalEmbeddings

pytestmark = pytest.mark.integration

DOCS = [
    Document("The Eiffel Tower is 330 metres tall and was finished in 1889.", metadata={"source": "/d/paris.md", "chunk": 0}),
    Document("Mount Fuji is the highest mountain in Japan, 3,776 metres high.", metadata={"source": "/d/japan.md", "chunk": 2}),
    Document("Bananas are rich in potassium and grow in the tropics.", metadata={"source": "/d/food.md", "chunk": 1}),
]  # fmt: skip


class ScoredRetriever:
    """Dense retrieval over the real MiniLM embeddings; the cosine similarity goes in metadata."""

    def __init__(self) -> None:
        from langchain_core.vectorstores import InMemoryVectorStore

        self.store = InMemoryVectorStore.from_documents(DOCS, LocalEmbeddings())
        self.calls = 0

    def invoke(self, query: str, config: object = None) -> list[Document]:
        self.calls += 1
        hits = self.store.similarity_search_with_score(query, k=3)
        return [Document(d.page_content, metadata={**d.metadata, "score": s}) for d, s in hits]


@pytest.fixture(scope="module")
def model(registry: object) -> LocalChatModel:
    return LocalChatModel(max_new_tokens=100)


@pytest.fixture(scope="module")
def retriever(registry: object) -> ScoredRetriever:
    return ScoredRetriever()


def test_rag_answer_cites_only_retrieved_passages(model: LocalChatModel, retriever: ScoredRetriever) -> None:
    chain = rag_chain(retriever, model, min_relevance=0.3)
    result = chain.invoke("How tall is the Eiffel Tower?")
    retrieved = {s["id"] for s in result["sources"]}
    assert result["found"] and result["citations"] and set(result["citations"]) <= retrieved
    assert "paris.md#0" in retrieved and "330" in result["answer"]
    # Every claim ends with its citation: the answer is "claim [id] claim [id]".
    assert result["answer"].rstrip().endswith("]")
    streamed = list(chain.stream_answer("How tall is the Eiffel Tower?"))
    assert streamed[-1]["answer"] == result["answer"]  # greedy: the stream and invoke agree
    assert "".join(p for p in streamed[:-1] if isinstance(p, str)).strip() == result["answer"]


def test_rag_says_i_dont_know_without_calling_the_model_below_threshold(retriever: ScoredRetriever) -> None:
    never = GenericFakeChatModel(messages=iter([]))  # fake: any call would raise StopIteration
    result = rag_chain(retriever, never, min_relevance=0.5).invoke("Who won the 1998 football World Cup?")
    assert result == {**result, "answer": IDK, "found": False, "citations": [], "sources": []}


def test_summarize_map_reduce_bookkeeping_with_a_fake_model() -> None:
    replies = iter([AIMessage(f"part {i}") for i in range(6)] + [AIMessage("merged a"), AIMessage("merged b"),
                                                                   AIMessage("final")])  # fmt: skip
    fake = GenericFakeChatModel(messages=replies)
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 40 for i in range(6))
    chain = summarize_chain(fake, chunk_size=260, chunk_overlap=0, reduce_chars=20)
    assert chain.invoke(text) == "final"  # 6 maps -> 2 reduces (3 + 3 summaries) -> 1 reduce


def test_summarize_real_model_keeps_the_facts(model: LocalChatModel) -> None:
    text = "The new library opens in March and holds 40,000 books. It cost 12 million euros."
    summary = summarize_chain(model).invoke(text)
    assert summary and ("library" in summary.lower() or "40,000" in summary)


def test_label_choice_is_always_a_label_with_a_probability(model: LocalChatModel) -> None:
    chain = classify_chain(labels=["sports", "cooking"], model=model)
    results = chain.batch(["The striker scored twice in the final.", "Simmer the sauce for ten minutes."])
    assert [r["label"] for r in results] == ["sports", "cooking"]
    assert all(0.5 <= r["score"] <= 1 for r in results)


def test_label_choice_with_a_fake_remote_model_matches_the_reply() -> None:
    fake = GenericFakeChatModel(messages=iter([AIMessage("Cooking."), AIMessage("no idea")]))
    chain = classify_chain(labels=["sports", "cooking"], model=fake)
    assert chain.invoke("Simmer the sauce.") == {"label": "cooking", "score": 1.0}
    with pytest.raises(BadInputError, match="none of"):
        chain.invoke("???")


ROUTES = {
    "cooking": Route("recipes, ingredients and cooking times", runnable=RunnableLambda(lambda q: "COOK")),
    "sports": Route("football, tennis and other sports results", runnable=RunnableLambda(lambda q: "SPORT")),
}


def test_route_by_embeddings_picks_the_chain_for_the_question(model: LocalChatModel) -> None:
    router = route_chain(ROUTES, model)
    assert router.invoke("How long should I boil an egg?")["output"] == "COOK"
    assert router.invoke({"question": "Who scored in the football final?"})["output"] == "SPORT"
    with pytest.raises(BadInputError, match="exactly one of runnable= or adapter="):
        route_chain({"x": Route("d")}, model)


def test_route_by_model_choice_returns_a_route_and_runs_it(model: LocalChatModel) -> None:
    out = route_chain(ROUTES, model, by="model").invoke("How long should I boil an egg?")
    assert out["route"] in ROUTES and out["output"] == {"cooking": "COOK", "sports": "SPORT"}[out["route"]]
    assert 0.5 <= out["score"] <= 1  # the chosen route's probability among two

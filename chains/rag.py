"""RAG question answering with citations: retrieve passages, answer only from them, cite each claim
as `[source#chunk]`, and say "I don't know" when nothing relevant was retrieved."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableConfig

IDK = "I don't know."


def passage_id(doc: Document) -> str:
    """`source#chunk`, the citation form: the file name (not the full path) and the chunk number."""
    from pathlib import PurePath

    meta = doc.metadata
    source = PurePath(str(meta.get("source", "doc"))).name
    chunk = meta.get("chunk", meta.get("chunk_index", meta.get("position", 0)))
    return f"{source}#{chunk}"


def relevance(doc: Document) -> float | None:
    """How relevant the retriever found `doc`, as a cosine similarity when it reports one (higher is
    better): an agentkit hybrid hit carries `dense_score` (its `score` is a rank-fusion number, not
    comparable to a threshold); a dense hit's `score` is the similarity. None when unknown (a hit
    only BM25 found)."""
    meta = doc.metadata
    for key in ("dense_score", "relevance", "similarity"):
        if isinstance(meta.get(key), (int, float)):
            return float(meta[key])
    if meta.get("retrieval", "dense") == "dense" and isinstance(meta.get("score"), (int, float)):
        return float(meta["score"])
    return None


def claims_schema(ids: list[str], max_claims: int) -> dict[str, Any]:
    """The answer as claims, each with its citation drawn from the retrieved ids: the grammar makes
    an uncited claim, or a citation of a passage that was not retrieved, impossible to emit."""
    return {
        "title": "cited_answer",
        "type": "object",
        "properties": {
            "claims": {
                "type": "array",
                "maxItems": max_claims,
                "items": {
                    "type": "object",
                    "properties": {"text": {"type": "string", "maxLength": 160}, "cite": {"enum": ids}},
                    "required": ["text", "cite"],
                },
            }
        },
        "required": ["claims"],
    }


def render(claims: list[dict[str, Any]]) -> str:
    parts = [f"{c['text'].strip()} [{c['cite']}]" for c in claims if c.get("text", "").strip() and c.get("cite")]
    return " ".join(parts) if parts else IDK


class RagChain(Runnable[Any, dict[str, Any]]):
    """An LCEL runnable: `chain.invoke("question")` -> {"question", "answer", "citations", "sources", "found"}.

    `min_relevance`: passages whose relevance (the retriever's score, see `relevance`) is below it
    are dropped, and with none left the answer is "I don't know" without calling the model.
    `stream_answer(question)` yields the answer text as it is generated (claim by claim).
    """

    def __init__(self, retriever: Any, model: Any, *, min_relevance: float | None = None, max_passages: int = 4,
                 max_claims: int = 3, prompt: str = "rag_claims") -> None:  # fmt: skip
        from agentkit.prompts import load_prompt

        self.retriever, self.model = retriever, model
        self.min_relevance, self.max_passages, self.max_claims = min_relevance, max_passages, max_claims
        self.prompt = load_prompt(prompt)

    def retrieve(self, question: str, config: RunnableConfig | None = None) -> list[Document]:
        docs = self.retriever.invoke(question, config=config)
        if self.min_relevance is not None:
            known = [relevance(d) for d in docs]
            if not any(r is not None and r >= self.min_relevance for r in known):
                return []  # nothing relevant: "I don't know", and the model is never asked
            # keep the relevant hits, and those of unknown relevance (keyword matches) beside them
            docs = [d for d, r in zip(docs, known) if r is None or r >= self.min_relevance]
        unique: dict[str, Document] = {}
        for doc in docs:  # one citation id per passage, best first
            unique.setdefault(passage_id(doc), doc)
        return list(unique.values())[: self.max_passages]

    def _answerer(self, docs: list[Document]) -> Runnable:
        ids = [passage_id(d) for d in docs]
        return self.prompt | self.model.with_structured_output(claims_schema(ids, self.max_claims))

    @staticmethod
    def _inputs(question: str, docs: list[Document]) -> dict[str, Any]:
        passages = [{"id": passage_id(d), "text": d.page_content.strip()} for d in docs]
        return {"question": question, "passages": passages}

    def _result(self, question: str, docs: list[Document], claims: list[dict[str, Any]]) -> dict[str, Any]:
        answer = render(claims)
        cited = sorted({c["cite"] for c in claims if c.get("cite")})
        return {
            "question": question,
            "answer": answer,
            "found": answer != IDK,
            "citations": cited,
            "sources": [
                {"id": passage_id(d), "source": d.metadata.get("source"), "relevance": relevance(d),
                 "text": d.page_content} for d in docs
            ],  # fmt: skip
        }

    def invoke(self, question: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        question = question["question"] if isinstance(question, dict) else question
        docs = self.retrieve(question, config)
        if not docs:
            return self._result(question, docs, [])
        out = self._answerer(docs).invoke(self._inputs(question, docs), config=config)
        return self._result(question, docs, list(out.get("claims") or []))

    def stream_answer(self, question: str, config: RunnableConfig | None = None) -> Iterator[str | dict[str, Any]]:
        """Yields answer text pieces as claims complete, then the final result dict."""
        docs = self.retrieve(question, config)
        claims: list[dict[str, Any]] = []
        if docs:
            shown = 0
            for partial in self._answerer(docs).stream(self._inputs(question, docs), config=config):
                claims = list((partial or {}).get("claims") or [])
                done = [c for c in claims[:-1] if c.get("cite")]  # the last claim may still grow
                for claim in done[shown:]:
                    yield render([claim]) + " "
                shown = max(shown, len(done))
            last = [c for c in claims[shown:] if c.get("cite") and c.get("text", "").strip()]
            if last:
                yield render(last)
        result = self._result(question, docs, claims)
        if not result["found"]:
            yield IDK
        yield result


def rag_chain(retriever: Any, model: Any = None, **kwargs: Any) -> RagChain:
    """A RAG chain over `retriever` (any LangChain retriever) answering with `model` (default: the
    built-in local chat model)."""
    if model is None:
        from agentkit.models import LocalChatModel

        model = LocalChatModel(max_new_tokens=160)
    return RagChain(retriever, model, **kwargs)

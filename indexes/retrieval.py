"""Retrieval over one index: dense, BM25, hybrid (reciprocal-rank fusion), MMR, filters, reranking.

`IndexRetriever` is the LangChain `BaseRetriever` a RAG chain calls; `search` does the work.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentkit.errors import BadInputError
from agentkit.indexes.backends import check_filter, matches_filter
from agentkit.indexes.index import Index

if TYPE_CHECKING:
    from agentkit.indexes.manifest import ChunkRow


class RetrievalMode(str, Enum):
    DENSE = "dense"  # cosine similarity of embeddings
    BM25 = "bm25"  # Okapi BM25 over the chunk texts
    HYBRID = "hybrid"  # reciprocal-rank fusion of the two


FilterValue = str | int | float | bool | list[str | int | float | bool]


class SearchOptions(BaseModel):
    """How to search an index; every field can also be passed per call (`retriever.invoke(q, k=3)`)."""

    model_config = ConfigDict(extra="forbid")

    mode: RetrievalMode = Field(default=RetrievalMode.HYBRID, description="dense | bm25 | hybrid")
    k: int = Field(default=4, gt=0, description="documents returned")
    filter: dict[str, FilterValue] | None = Field(
        default=None,
        description='metadata that must match: {"format": "pdf"} or {"source": ["/a.md", "/b.md"]}',
    )
    mmr: bool = Field(default=False, description="diversify the k results with maximal marginal relevance")
    mmr_lambda: float = Field(
        default=0.5, ge=0.0, le=1.0, description="MMR: 1 = relevance only, 0 = diversity only"
    )
    fetch_k: int = Field(
        default=50, gt=0, description="candidates per ranker, fed to fusion, MMR and the reranker"
    )
    rrf_k: int = Field(
        default=60, gt=0, description="reciprocal-rank fusion constant: score = sum 1/(rrf_k + rank)"
    )
    rerank: str | None = Field(
        default=None,
        description="cross-encoder registry id to rerank candidates; 'auto' = one if the registry has it",
    )

    @field_validator("filter", mode="before")
    @classmethod
    def _one_filter_semantics(cls, value: Any) -> Any:
        return check_filter(value) if isinstance(value, dict) else value  # one message naming the fix


# English function words: they match almost every chunk and drown BM25's signal. (NLTK's list.)
_STOPWORDS = (
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself "
    "it its itself they them their theirs themselves what which who whom this that these those am is are was were be "
    "been being have has had having do does did doing a an the and but if or because as until while of at by for with "
    "about against between into through during before after above below to from up down in out on off over under "
    "again further then once here there when where why how all any both each few more most other some such no nor not "
    "only own same so than too very s t can will just don should now d ll m o re ve y"
)
STOPWORDS = frozenset(_STOPWORDS.split())
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


class BM25Index:
    """Okapi BM25 (rank_bm25, k1=1.5, b=0.75) over the visible chunks at one manifest generation."""

    def __init__(self, rows: list[ChunkRow]) -> None:
        from rank_bm25 import BM25Okapi

        self.rows = rows
        corpus = [tokenize(r.text) for r in rows]
        # BM25Okapi divides by the corpus size; an index with no text gets no model at all.
        self._bm25 = BM25Okapi(corpus) if any(corpus) else None

    def search(self, query: str, k: int, filter: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        import numpy as np

        terms = tokenize(query)
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        if filter:
            keep = np.array([matches_filter(r.metadata, filter) for r in self.rows])
            scores = np.where(keep, scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.rows[i].id, float(scores[i])) for i in top if scores[i] > 0]  # 0: no query term at all


def reciprocal_rank_fusion(rankings: list[list[tuple[str, float]]], c: int = 60) -> list[tuple[str, float]]:
    """score(d) = sum over rankings of 1 / (c + rank of d), rank from 1 (Cormack et al., 2009)."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, (doc_id, _) in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (c + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


def search(index: Index, query: str, options: SearchOptions) -> list[Document]:
    """Candidates from each ranker -> fusion -> visible chunks only -> rerank -> MMR -> top k."""
    import numpy as np

    filter = check_filter(options.filter)
    pool = max(options.k, options.fetch_k)
    query_vector = None
    rankings: dict[str, list[tuple[str, float]]] = {}
    if options.mode in (RetrievalMode.DENSE, RetrievalMode.HYBRID):
        query_vector = np.asarray(index.embeddings.embed_query(query), dtype=np.float32)
        rankings["dense"] = index.backend.search_vectors(query_vector, pool, filter)
    if options.mode in (RetrievalMode.BM25, RetrievalMode.HYBRID):
        rankings["bm25"] = index.bm25().search(query, pool, filter)
    if options.mode is RetrievalMode.HYBRID:
        ranked = reciprocal_rank_fusion(list(rankings.values()), options.rrf_k)
    else:
        ranked = rankings[options.mode.value]

    # Hits the manifest does not show belong to an add still running, or one that was killed.
    rows = index.manifest.chunks_by_id([doc_id for doc_id, _ in ranked])
    ranked = [(doc_id, score) for doc_id, score in ranked if doc_id in rows]
    extra: dict[str, dict[str, Any]] = {doc_id: {} for doc_id, _ in ranked}
    for name, ranking in rankings.items():
        for rank, (doc_id, score) in enumerate(ranking, start=1):
            if doc_id in extra and len(rankings) > 1:
                extra[doc_id].update({f"{name}_score": score, f"{name}_rank": rank})

    if options.rerank:
        reranker = index.reranker(options.rerank)
        if reranker is not None and ranked:
            scores = reranker.score(query, [rows[doc_id].text for doc_id, _ in ranked])
            for (doc_id, score), new in zip(ranked, scores, strict=True):
                extra[doc_id].update({"retrieval_score": score, "rerank_score": new})
            ranked = sorted(zip([d for d, _ in ranked], scores, strict=True), key=lambda item: -item[1])

    if options.mmr and ranked:
        from langchain_core.vectorstores.utils import maximal_marginal_relevance

        if query_vector is None:
            query_vector = np.asarray(index.embeddings.embed_query(query), dtype=np.float32)
        vectors = index.backend.get_vectors([doc_id for doc_id, _ in ranked])
        ranked = [item for item in ranked if item[0] in vectors]
        picked = maximal_marginal_relevance(
            query_vector, [vectors[d] for d, _ in ranked], options.mmr_lambda, options.k
        )
        ranked = [ranked[i] for i in picked]

    return [
        Document(
            id=doc_id,
            page_content=rows[doc_id].text,
            metadata={**rows[doc_id].metadata, "score": score, "rank": rank, "retrieval": options.mode.value}
            | extra[doc_id],
        )
        for rank, (doc_id, score) in enumerate(ranked[: options.k], start=1)
    ]


class IndexRetriever(BaseRetriever, SearchOptions):
    """A LangChain retriever over an agentkit index; Documents carry source, chunk_id, position,
    start_index, content_hash and score in their metadata.

    Example:
        ```python
        from agentkit.indexes import open_index

        retriever = open_index("docs").as_retriever(mode="hybrid", k=5, filter={"format": "markdown"})
        docs = retriever.invoke("how do I resume a killed run?", k=3)  # per-call overrides
        ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    index: Index = Field(description="the agentkit.indexes.Index to search", exclude=True)

    def _options(self, overrides: dict[str, Any]) -> SearchOptions:
        unknown = sorted(set(overrides) - set(SearchOptions.model_fields))
        if unknown:
            raise BadInputError(
                f"Unknown retriever option(s) {', '.join(unknown)}.",
                fix=f"use any of: {', '.join(SearchOptions.model_fields)}.",
            )
        base = {name: getattr(self, name) for name in SearchOptions.model_fields}
        return SearchOptions.model_validate(base | overrides)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        return search(self.index, query, self._options(overrides))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        # The base class would drop per-call overrides (k=...) on the way to the worker thread.
        options = self._options(overrides)
        return await run_in_executor(None, search, self.index, query, options)

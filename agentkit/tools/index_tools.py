"""`search_index` and `ask_index`: an agent's window on the indexes its goal allows, through the
index issue's retriever (agentkit.indexes) and RAG chain (agentkit.chains.rag) -- no retrieval here."""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import BadInputError
from agentkit.tools.model_tools import answer_model, check_entries
from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool


class SearchIndexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: str | None = Field(default=None, description="index name; default: the goal's only index")
    mode: Literal["dense", "bm25", "hybrid"] = Field(default="hybrid", description="how passages are ranked")
    max_chars: int = Field(default=600, gt=0, description="characters shown per passage")


class AskIndexOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    index: str | None = Field(default=None, description="index name; default: the goal's only index")
    model: str | None = Field(default=None, description="registry id answering; default: the agent's model")
    adapter: str | None = Field(default=None, description="registry adapter id of `model`")
    k: int = Field(default=4, gt=0, le=20, description="passages retrieved")
    mode: Literal["dense", "bm25", "hybrid"] = Field(default="hybrid", description="how passages are ranked")
    min_relevance: float | None = Field(default=0.3, description="cosine similarity a passage needs")
    max_tokens: int = Field(default=200, gt=0, description="tokens for the answer")
    timeout_s: float = Field(default=120.0, gt=0, description="seconds one answer may take")


def allowed_index(context: ToolContext, requested: str | None, tool: str) -> str:
    """The index `tool` may open: the one named (it must be in the goal's `indexes:`), or the only one."""
    from agentkit.indexes.index import indexes_dir
    from agentkit.indexes.spec import SPEC_FILE
    from agentkit.registry import Registry

    allowed = list(context.indexes)
    if requested is None:
        if len(allowed) != 1:
            raise BadInputError(
                f"tool {tool!r} needs an index: the goal allows {len(allowed)} ({', '.join(allowed) or 'none'}).",
                fix=f"list the index under `indexes:` in the goal, or give `index:` under {tool} in tools:",
            )
        requested = allowed[0]
    if requested not in allowed:
        raise BadInputError(
            f"tool {tool!r} names index {requested!r}, which the goal does not allow ({', '.join(allowed) or 'none'}).",
            fix=f"add {requested!r} under `indexes:` in the goal.",
        )
    if not (indexes_dir(Registry(context.home)) / requested / SPEC_FILE).is_file():
        raise BadInputError(f"No index {requested!r} in the registry at {Registry(context.home).root}.",
                            fix=f"create it with `agentkit index add {requested} PATH...`.")  # fmt: skip
    return requested


class _LazyIndex:
    """Opens the index on the first call (loading the embedding model is seconds) and keeps it."""

    def __init__(self, name: str, context: ToolContext) -> None:
        self.name, self.context = name, context
        self._index: Any = None
        self._lock = threading.Lock()  # invoke_tool may leave a slow call running when the next begins

    def get(self) -> Any:
        with self._lock:
            if self._index is None:
                from agentkit.indexes import open_index

                self._index = open_index(self.name, home=self.context.home)
            return self._index


def format_hits(docs: list[Any], max_chars: int) -> str:
    from agentkit.chains.rag import passage_id

    if not docs:
        return "no passages found."
    lines = []
    for doc in docs:
        text = " ".join(doc.page_content.split())
        text = text if len(text) <= max_chars else text[:max_chars] + " ..."
        lines.append(f"[{passage_id(doc)}] {text}")
    return "\n".join(lines)


def _build_search(context: ToolContext, options: SearchIndexOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    index = _LazyIndex(allowed_index(context, options.index, "search_index"), context)

    def search_index(query: str, k: int = 4) -> str:
        """Search the documents; returns matching passages."""
        if not 1 <= k <= 20:
            raise ToolError(f"k={k} is out of range.", fix="use k from 1 to 20.")
        return format_hits(index.get().search(query, mode=options.mode, k=k), options.max_chars)

    return StructuredTool.from_function(
        search_index, name="search_index", description="Search the documents for passages."
    )


def _build_ask(context: ToolContext, options: AskIndexOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    index = _LazyIndex(allowed_index(context, options.index, "ask_index"), context)
    check_entries(context, options.model, options.adapter)
    llm = answer_model(context, options.model, options.adapter, options.max_tokens, options.timeout_s)

    def ask_index(question: str) -> str:
        """Answer a question from the documents, with citations."""
        from agentkit.chains.rag import rag_chain

        retriever = index.get().as_retriever(mode=options.mode, k=options.k)
        chain = rag_chain(retriever, llm, min_relevance=options.min_relevance, max_passages=options.k)
        result = chain.invoke(question)
        return result["answer"]

    return StructuredTool.from_function(
        ask_index,
        name="ask_index",
        description="Answer a question from the documents.",
        metadata={"timeout_s": options.timeout_s + 60.0},  # + opening the index (loads the encoder)
    )


register_tool(ToolFactory("search_index", _build_search, "search an index for passages", SearchIndexOptions))
register_tool(ToolFactory("ask_index", _build_ask, "answer from an index with citations", AskIndexOptions))

"""`agentkit ask INDEX "question"`: RAG over an index -- stream the cited answer, then the sources."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def ask(
    index: Annotated[str, typer.Argument(help="Name of an index (`agentkit index list`).")],
    question: Annotated[str, typer.Argument(help="The question.")],
    model: Annotated[str, typer.Option("--model", help="Registry id of the chat model.")] = "smollm2-135m-instruct",
    adapter: Annotated[str | None, typer.Option("--adapter", help="Registry id of an adapter of --model.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=20, help="Passages retrieved.")] = 4,
    mode: Annotated[str, typer.Option("--mode", help="dense | bm25 | hybrid")] = "hybrid",
    min_relevance: Annotated[
        float, typer.Option(help="Cosine similarity a passage needs; none above it: \"I don't know\".")
    ] = 0.3,
    max_new_tokens: Annotated[int, typer.Option(min=16, help="Tokens for the answer.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result object as JSON instead.")] = False,
) -> None:
    """Answer a question from an index with the built-in (or a tuned) model, citing [source#chunk]."""
    from rich.console import Console

    from agentkit.chains.rag import rag_chain
    from agentkit.indexes import open_index
    from agentkit.models import LocalChatModel

    console = Console(stderr=True)
    retriever = open_index(index).as_retriever(mode=mode, k=k)
    llm = LocalChatModel(model=model, adapter=adapter, max_new_tokens=max_new_tokens)
    chain = rag_chain(retriever, llm, min_relevance=min_relevance, max_passages=k)
    if as_json:
        typer.echo(json.dumps(chain.invoke(question), indent=2, ensure_ascii=False))
        return
    result: dict = {}
    with console.status("retrieving and reading …"):
        pieces = chain.stream_answer(question)
        first = next(pieces)
    for piece in [first, *pieces]:
        if isinstance(piece, dict):
            result = piece
        else:
            typer.echo(piece, nl=False)
    typer.echo("")
    if result.get("sources"):
        typer.echo("\nSources:")
        for source in result["sources"]:
            mark = "*" if source["id"] in result["citations"] else " "
            score = f"{source['relevance']:.2f}" if source.get("relevance") is not None else "-"
            typer.echo(f" {mark} [{source['id']}] {source['source']} (relevance {score})")

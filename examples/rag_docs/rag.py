"""RAG over a folder from Python: index examples/rag_docs/docs, then answer with citations.

Run:  .venv/bin/python examples/rag_docs/rag.py ["question" ...]
The index is `harbor-docs` in $AGENTKIT_HOME/indexes/; a second run embeds nothing new.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agentkit.chains import rag_chain
from agentkit.indexes import Index

DOCS = Path(__file__).resolve().parent / "docs"
QUESTIONS = [
    "How much can the Gull robot carry?",
    "Who founded Harbor Robotics?",
    "What is the capital of Australia?",  # not in the documents: "I don't know."
]


def main(questions: list[str]) -> None:
    # Same settings as `agentkit index add harbor-docs examples/rag_docs/docs` (FAISS, minilm-l6).
    with Index.open_or_create("harbor-docs") as index:
        report = index.add([DOCS])
        print(f"indexed {report.indexed} files, {report.unchanged} unchanged, {report.chunks_added} new chunks")
        # min_relevance: below this cosine similarity nothing counts as relevant -> "I don't know."
        chain = rag_chain(index.as_retriever(mode="hybrid", k=4), min_relevance=0.3)
        for question in questions:
            result = chain.invoke(question)
            print(f"\nQ: {question}\nA: {result['answer']}")
            for source in result["sources"]:
                mark = "*" if source["id"] in result["citations"] else " "
                print(f"  {mark} [{source['id']}] relevance {source['relevance']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or QUESTIONS)

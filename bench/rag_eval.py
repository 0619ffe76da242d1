"""RAG evaluation on XQuAD (SQuAD v1.1 format): retrieval hit@1 / hit@5 of the gold paragraph.

Each context is written as one .txt file and indexed with `agentkit.indexes` (minilm-l6, recursive
1000/100, FAISS); every question is asked in dense, BM25 and hybrid mode. A hit is a retrieved chunk
of the gold paragraph's file. Targets: hybrid hit@1 >= 0.94 and hit@5 >= 0.99, each >= dense.
`--baseline` also scores LangChain's plain pipeline (RecursiveCharacterTextSplitter 1000/100 +
HuggingFaceEmbeddings of the same MiniLM + FAISS) in the same run.

Answer EM / F1 of the RAG chain (`agentkit.chains.rag_chain`, hybrid k=5, the built-in 135M
model) on the first `--answers N` questions (each takes ~20 s on 2 CPU cores; 0 skips them).

Run: .venv/bin/python bench/rag_eval.py [--data ../shared/data/xquad] [--baseline] [--answers 40]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xquad"


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    answers: list[str]
    gold: str  # name of the file holding the gold paragraph


def load_xquad(data: Path, corpus: Path) -> list[Example]:
    """Write each context to corpus/<article>-<paragraph>.txt; return the questions with their gold file."""
    files = sorted(data.glob("*.json")) if data.is_dir() else [data]
    corpus.mkdir(parents=True, exist_ok=True)
    examples = []
    for file in files:
        for a, article in enumerate(json.loads(file.read_text(encoding="utf-8"))["data"]):
            for p, paragraph in enumerate(article["paragraphs"]):
                name = f"{file.stem}-{a:03d}-{p:02d}.txt"
                (corpus / name).write_text(paragraph["context"], encoding="utf-8")
                for qa in paragraph["qas"]:
                    examples.append(
                        Example(qa["id"], qa["question"], [x["text"] for x in qa["answers"]], name)
                    )
    return examples


def hits_at(ranked_sources: list[list[str]], examples: list[Example]) -> dict[str, float]:
    n = len(examples)
    return {
        "hit@1": sum(bool(r) and r[0] == e.gold for r, e in zip(ranked_sources, examples)) / n,
        "hit@5": sum(e.gold in r[:5] for r, e in zip(ranked_sources, examples)) / n,
    }


def evaluate_retrieval(
    index: Any, examples: list[Example], modes: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    results = {}
    for mode in modes:
        started = time.perf_counter()
        ranked = [
            [Path(d.metadata["source"]).name for d in index.search(e.question, mode=mode, k=5)]
            for e in examples
        ]
        results[mode] = hits_at(ranked, examples) | {"seconds": time.perf_counter() - started}
    return results


# ---- answers --------------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_em_f1(prediction: str, answers: list[str]) -> tuple[float, float]:
    """Exact match and token F1 of one prediction against its gold answers (max over answers)."""

    def f1(pred: str, gold: str) -> float:
        p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
        common = sum((collections.Counter(p) & collections.Counter(g)).values())
        if not p or not g:
            return float(p == g)
        if common == 0:
            return 0.0
        precision, recall = common / len(p), common / len(g)
        return 2 * precision * recall / (precision + recall)

    em = max(float(normalize_answer(prediction) == normalize_answer(a)) for a in answers)
    return em, max(f1(prediction, a) for a in answers)


def evaluate_answers(retriever: Any, examples: list[Example], model: str | None = None) -> dict[str, float]:
    """Answer each question with `agentkit.chains.rag_chain` over `retriever` on the built-in model
    (or `model`, a registry id) and score the claim text (citations stripped) against the gold
    answers: SQuAD EM / F1, plus `contains` (a gold answer appears verbatim in the answer, which is
    kinder to a model that answers in a sentence) and the share of "I don't know" answers."""
    from agentkit.chains import rag_chain
    from agentkit.models import LocalChatModel

    chain = rag_chain(retriever, LocalChatModel(model=model, max_new_tokens=160) if model else None)
    ems, f1s, contains, idk, seconds = [], [], [], 0, []
    for i, example in enumerate(examples, 1):
        started = time.perf_counter()
        result = chain.invoke(example.question)
        seconds.append(time.perf_counter() - started)
        prediction = re.sub(r"\s*\[[^\]]*#[^\]]*\]", "", result["answer"]).strip()  # drop [source#chunk]
        idk += not result["found"]
        em, f1 = squad_em_f1(prediction, example.answers)
        ems.append(em)
        f1s.append(f1)
        contains.append(float(any(normalize_answer(a) in normalize_answer(prediction) for a in example.answers)))
        if i % 10 == 0 or i == len(examples):
            print(f"  answered {i}/{len(examples)}: EM {sum(ems) / i:.3f} F1 {sum(f1s) / i:.3f}", file=sys.stderr)
    n = len(examples)
    return {"questions": n, "em": sum(ems) / n, "f1": sum(f1s) / n, "contains": sum(contains) / n,
            "idk": idk / n, "seconds_per_question": sum(seconds) / n}  # fmt: skip


def spread(examples: list[Example], n: int) -> list[Example]:
    """n questions spread evenly over the set (the first n would all come from one article)."""
    step = max(1, len(examples) // n)
    return examples[::step][:n]


# ---- the LangChain baseline -------------------------------------------------------------------------
def baseline_dense(corpus: Path, examples: list[Example], model_path: Path) -> dict[str, float]:
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = [
        Document(p.read_text(encoding="utf-8"), metadata={"source": p.name})
        for p in sorted(corpus.glob("*.txt"))
    ]
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100).split_documents(docs)
    store = FAISS.from_documents(
        chunks, HuggingFaceEmbeddings(model_name=str(model_path), model_kwargs={"device": "cpu"})
    )
    ranked = [[d.metadata["source"] for d in store.similarity_search(e.question, k=5)] for e in examples]
    return hits_at(ranked, examples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="XQuAD folder or .json file")
    parser.add_argument("--baseline", action="store_true", help="also score LangChain's plain dense pipeline")
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions (0 = all)")
    parser.add_argument("--answers", type=int, default=40, help="answer the first N questions with the RAG chain (0 = none)")
    parser.add_argument("--model", help="registry id of the answering model (default: the built-in)")
    parser.add_argument("--json-out", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: no XQuAD data at {args.data} (pass --data PATH; see ../shared/data/README.md)")
        return 0

    from agentkit.indexes import create_index
    from agentkit.registry import Registry
    from agentkit.registry.importer import copy_hf_folder

    with tempfile.TemporaryDirectory(prefix="agentkit-rag-eval-") as tmp:
        work = Path(tmp)
        examples = load_xquad(args.data, work / "corpus")
        if args.limit:
            examples = examples[: args.limit]
        source = Registry.default().path("minilm-l6")  # converted once from its package if needed
        Registry(work / "home").create_entry("minilm-l6", lambda stage: copy_hf_folder(source, stage))
        index = create_index("xquad", splitter={"chunk_size": 1000, "chunk_overlap": 100}, home=work / "home")
        added = index.add([work / "corpus"])
        print(
            f"indexed {added.indexed} paragraphs -> {added.chunks_added} chunks in {added.seconds:.1f}s; "
            f"{len(examples)} questions"
        )
        results: dict[str, Any] = {"questions": len(examples), "chunks": added.chunks_added}
        results["retrieval"] = evaluate_retrieval(index, examples, ("dense", "bm25", "hybrid"))
        if args.baseline:
            results["retrieval"]["langchain dense (baseline)"] = baseline_dense(
                work / "corpus", examples, source
            )
        answers = None
        if args.answers:
            answers = evaluate_answers(index.as_retriever(mode="hybrid", k=5), spread(examples, args.answers), args.model)
        results["answers"] = answers
        index.close()

    print(f"{'mode':28s} {'hit@1':>6s} {'hit@5':>6s}")
    for mode, scores in results["retrieval"].items():
        print(f"{mode:28s} {scores['hit@1']:6.3f} {scores['hit@5']:6.3f}")
    dense, hybrid = results["retrieval"]["dense"], results["retrieval"]["hybrid"]
    ok = hybrid["hit@1"] >= max(0.94, dense["hit@1"]) and hybrid["hit@5"] >= max(0.99, dense["hit@5"])
    print(f"target hybrid hit@1 >= 0.94 and hit@5 >= 0.99, each >= dense: {'met' if ok else 'NOT met'}")
    if answers:
        print(
            f"RAG answers ({answers['questions']} questions, {answers['seconds_per_question']:.1f} s each): "
            f"EM {answers['em']:.3f}  F1 {answers['f1']:.3f}  gold answer contained {answers['contains']:.3f}  "
            f"\"I don't know\" {answers['idk']:.3f}"
        )
    else:
        print("RAG answers: not measured (--answers 0)")
    print(json.dumps(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

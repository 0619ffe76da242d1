"""Indexing throughput: `agentkit index add` vs LangChain's plain FAISS pipeline, same run, same corpus.

1. chunks/s, warm (models loaded before the clock, in-process, alternating runs, medians):
   `Index.add` (what `agentkit index add` runs) vs `FAISS.from_documents(docs, HuggingFaceEmbeddings(...))`
   with the same files, RecursiveCharacterTextSplitter 1000/100 and the same MiniLM weights. Target >= 1.0x.
   Also end to end as a user runs them (`--cli`): a fresh `agentkit index add` process vs a fresh
   process running the LangChain pipeline, imports and model load included.
2. Re-indexing the unchanged corpus vs a full rebuild. Target >= 20x faster.
3. Query latency p50 / p95 per mode (dense, bm25, hybrid), warm, k=5.

Corpus: the XQuAD contexts (one .txt per paragraph) from --data, or any folder of .txt/.md via --corpus.
Run: flock /tmp/agentkit-heavy.lock .venv/bin/python bench/index_throughput.py [--repeats 3] [--cli]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rag_eval import DEFAULT_DATA, load_xquad  # bench/ is a folder of scripts, not a package

CHUNK_SIZE, CHUNK_OVERLAP = 1000, 100


def langchain_pipeline(corpus: Path, embeddings: Any) -> int:
    """LangChain's plain pipeline from the files on; returns the number of chunks it indexed."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".txt", ".md"))
    docs = [Document(p.read_text(encoding="utf-8"), metadata={"source": str(p)}) for p in files]
    chunks = RecursiveCharacterTextSplitter(
        chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP
    ).split_documents(docs)
    FAISS.from_documents(chunks, embeddings)
    return len(chunks)


# The same pipeline in a fresh process, imports and model load included (for --cli).
LANGCHAIN_SCRIPT = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from langchain_huggingface import HuggingFaceEmbeddings
from index_throughput import langchain_pipeline
langchain_pipeline(Path(sys.argv[1]), HuggingFaceEmbeddings(model_name=sys.argv[2], model_kwargs={{"device": "cpu"}}))
"""


def langchain_warm(corpus: Path, embeddings: Any) -> tuple[float, int]:
    started = time.perf_counter()
    chunks = langchain_pipeline(corpus, embeddings)
    return time.perf_counter() - started, chunks


def agentkit_warm(corpus: Path, home: Path, name: str) -> tuple[float, int, Any]:
    from agentkit.indexes import create_index

    index = create_index(name, splitter={"chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP}, home=home)
    started = time.perf_counter()  # the model is loaded (create measured its dimension)
    report = index.add([corpus])
    return time.perf_counter() - started, report.chunks_added, index


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
    }


def run_cli(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="XQuAD folder (its contexts become the corpus)"
    )
    parser.add_argument("--corpus", type=Path, help="a folder of .txt/.md files to use instead")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each pipeline")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per mode")
    parser.add_argument("--cli", action="store_true", help="also time fresh processes end to end")
    args = parser.parse_args()

    from langchain_huggingface import HuggingFaceEmbeddings

    from agentkit.registry import Registry
    from agentkit.registry.importer import copy_hf_folder

    with tempfile.TemporaryDirectory(prefix="agentkit-index-bench-") as tmp:
        work = Path(tmp)
        if args.corpus:
            corpus, questions = args.corpus.resolve(), []
        elif args.data.exists():
            corpus = work / "corpus"
            questions = [e.question for e in load_xquad(args.data, corpus)]
        else:
            print(f"skipped: no XQuAD data at {args.data}; pass --data PATH or --corpus DIR")
            return 0
        questions = questions or ["what is this about?"]
        source = Registry.default().path("minilm-l6")
        home = work / "home"
        Registry(home).create_entry("minilm-l6", lambda stage: copy_hf_folder(source, stage))
        baseline_embeddings = HuggingFaceEmbeddings(model_name=str(source), model_kwargs={"device": "cpu"})
        baseline_embeddings.embed_documents(["warm up"])

        ours, theirs, chunks = [], [], 0
        index = None
        for run in range(args.repeats):  # alternate, so load from other processes hits both alike
            seconds, n_theirs = langchain_warm(corpus, baseline_embeddings)
            theirs.append(n_theirs / seconds)
            if index is not None:
                index.close()
            seconds, chunks, index = agentkit_warm(corpus, home, f"run{run}")
            ours.append(chunks / seconds)
            print(
                f"run {run}: agentkit {ours[-1]:.1f} chunks/s ({chunks}), langchain {theirs[-1]:.1f} chunks/s ({n_theirs})",
                flush=True,
            )
        results: dict[str, Any] = {
            "chunks": chunks,
            "warm_chunks_per_s": {
                "agentkit": statistics.median(ours),
                "langchain": statistics.median(theirs),
            },
        }
        results["warm_ratio"] = (
            results["warm_chunks_per_s"]["agentkit"] / results["warm_chunks_per_s"]["langchain"]
        )

        rebuild = chunks / statistics.median(ours)
        started = time.perf_counter()
        again = index.add([corpus])
        reindex = time.perf_counter() - started
        if again.embedded or again.indexed:
            raise SystemExit(
                f"re-indexing an unchanged corpus embedded {again.embedded} chunks: {again.summary()}"
            )
        results["reindex"] = {"unchanged_s": reindex, "full_rebuild_s": rebuild, "speedup": rebuild / reindex}

        latency = {}
        for mode in ("dense", "bm25", "hybrid"):
            index.search(questions[0], mode=mode, k=5)  # BM25 is built on the first query
            times = []
            for question in questions[: args.queries]:
                started = time.perf_counter()
                index.search(question, mode=mode, k=5)
                times.append(time.perf_counter() - started)
            latency[mode] = percentiles(times)
        results["query_latency"] = latency
        index.close()

        if args.cli:
            env = {**os.environ, "AGENTKIT_HOME": str(home)}
            script = LANGCHAIN_SCRIPT
            cli_ours, cli_theirs = [], []
            for run in range(args.repeats):
                cli_theirs.append(run_cli([sys.executable, "-c", script, str(corpus), str(source)], env))
                cli_ours.append(
                    run_cli(
                        [
                            sys.executable,
                            "-m",
                            "agentkit",
                            "index",
                            "add",
                            f"cli{run}",
                            str(corpus),
                            "--no-progress",
                        ],
                        env,
                    )
                )
            rerun = run_cli(
                [sys.executable, "-m", "agentkit", "index", "add", "cli0", str(corpus), "--no-progress"], env
            )
            results["cli_seconds"] = {
                "agentkit index add": statistics.median(cli_ours),
                "langchain script": statistics.median(cli_theirs),
                "agentkit index add, unchanged": rerun,
            }
        shutil.rmtree(home, ignore_errors=True)

    warm = results["warm_chunks_per_s"]
    print(
        f"\nindexing {results['chunks']} chunks, warm: agentkit {warm['agentkit']:.1f} chunks/s, "
        f"langchain {warm['langchain']:.1f} chunks/s -> {results['warm_ratio']:.2f}x (target >= 1.0x)"
    )
    r = results["reindex"]
    print(
        f"re-index unchanged: {r['unchanged_s'] * 1000:.0f} ms vs full rebuild {r['full_rebuild_s']:.1f} s "
        f"-> {r['speedup']:.0f}x faster (target >= 20x)"
    )
    for mode, p in results["query_latency"].items():
        print(f"query {mode:6s}: p50 {p['p50_ms']:.1f} ms, p95 {p['p95_ms']:.1f} ms")
    if "cli_seconds" in results:
        c = results["cli_seconds"]
        print(
            f"end to end (fresh processes): agentkit index add {c['agentkit index add']:.1f} s, "
            f"langchain script {c['langchain script']:.1f} s, unchanged re-run {c['agentkit index add, unchanged']:.1f} s"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`agentkit index add | list | show | rm | query`: named document indexes from the command line.

Heavy imports (langchain, faiss, chromadb, torch) happen inside each command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Document indexes for retrieval (FAISS or Chroma), under $AGENTKIT_HOME/indexes.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Index name (a-z, 0-9, '.', '_', '-').")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.command("add")
def add(
    name: NameArg,
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (walked recursively).")],
    include: Annotated[
        list[str], typer.Option("--include", "-i", help="Only files matching this glob (repeatable).")
    ] = [],  # noqa: B006
    exclude: Annotated[
        list[str], typer.Option("--exclude", "-x", help="Skip files/folders matching this glob (repeatable).")
    ] = [],  # noqa: B006
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove chunks of files deleted under PATHS.")
    ] = False,
    embedding: Annotated[
        str | None, typer.Option("--embedding", help="Registry embedding model [new index: minilm-l6].")
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="faiss | chroma [new index: faiss].")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Chroma server host (backend chroma).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Chroma server port (backend chroma).")] = None,
    splitter: Annotated[
        str | None, typer.Option("--splitter", help="recursive (characters) | tokens [recursive].")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", help="Characters or tokens [1000 / 200].")
    ] = None,
    chunk_overlap: Annotated[int | None, typer.Option("--chunk-overlap", help="Overlap [100 / 20].")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Chunks per embedding call and commit [128].")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 2 if any file was skipped.")] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Print a line per commit (stderr).")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Index files incrementally: unchanged files embed nothing, changed ones replace their chunks."""
    from agentkit.errors import BadInputError
    from agentkit.indexes.index import Index

    splitter_settings = {
        k: v
        for k, v in {"kind": splitter, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap}.items()
        if v is not None
    }
    options = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if options and (backend or "chroma") != "chroma":
        raise BadInputError("--host/--port are options of the chroma backend.", fix="add --backend chroma.")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:  # before anything is created
        raise BadInputError(
            f"{', '.join(missing)}: no such file or folder; nothing was indexed.", fix="check the paths."
        )
    index = Index.open_or_create(
        name,
        embeddings=embedding,
        backend=backend or ("chroma" if options else None),
        backend_options=options or None,
        splitter=splitter_settings or None,
    )

    def say(step) -> None:
        typer.echo(
            f"[{name}] {step.sources_done}/{step.sources_total} files, {step.chunks} chunks committed",
            err=True,
        )

    with index:
        report = index.add(
            paths,
            include=include,
            exclude=exclude,
            prune=prune,
            batch_size=batch_size,
            progress=say if progress else None,
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(report.summary())
        for path, reason in report.skipped:
            typer.echo(f"  skipped {path}: {reason}")
    if strict and report.skipped:
        raise typer.Exit(2)


@app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """List indexes with their backend, embedding model and size."""
    from agentkit.indexes.index import indexes_dir, list_indexes
    from agentkit.indexes.manifest import Manifest
    from agentkit.registry import Registry

    root = indexes_dir(Registry.default())
    rows = []
    for spec in list_indexes():
        manifest = Manifest.open(root / spec.name)
        counts = manifest.counts()
        manifest.close()
        rows.append(
            {
                "name": spec.name,
                "backend": spec.backend,
                "embedding": spec.embedding.model,
                "splitter": f"{spec.splitter.kind.value} {spec.splitter.chunk_size}/{spec.splitter.chunk_overlap}",
                "sources": counts["sources"],
                "chunks": counts["chunks"],
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"agentkit indexes ({root})")
    for column in ("name", "backend", "embedding", "splitter", "sources", "chunks"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(str(row[c]) for c in ("name", "backend", "embedding", "splitter", "sources", "chunks"))
        )
    Console().print(table)


@app.command("show")
def show(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show an index's spec and state (counts, last add, whether it was interrupted)."""
    from agentkit.indexes.index import Index

    with Index.open(name) as index:
        data = {"spec": index.spec.model_dump(mode="json"), "path": str(index.folder), **index.stats()}
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    spec = data["spec"]
    typer.echo(
        f"{name}: {data['sources']} sources, {data['chunks']} chunks, {data['vectors']} vectors, "
        f"{data['disk_bytes'] / 1e6:.1f} MB at {data['path']}"
    )
    typer.echo(f"  backend {spec['backend']} {spec['backend_options'] or ''}".rstrip())
    typer.echo(f"  embedding {spec['embedding']['model']} (dimension {spec['embedding']['dimension']})")
    typer.echo(
        f"  splitter {spec['splitter']['kind']} {spec['splitter']['chunk_size']}/{spec['splitter']['chunk_overlap']}"
    )
    if data["interrupted"]:
        typer.echo(f"  the last add was interrupted: rerun `agentkit index add {name} PATH...` to finish it")
    if data["needs_reindex"]:
        typer.echo(f"  {data['needs_reindex']} sources lost vectors and will be re-indexed by the next add")


@app.command("rm")
def remove(name: NameArg) -> None:
    """Delete an index (and its collection on a Chroma server)."""
    from agentkit.indexes.index import remove_index

    remove_index(name)
    typer.echo(f"removed index {name}")


def _filter(pairs: list[str]) -> dict[str, object] | None:
    """key=value pairs; a key repeated means any of its values. Values that parse as JSON numbers
    or booleans (position=0, page=2) compare as such."""
    from agentkit.errors import BadInputError

    out: dict[str, list[object]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BadInputError(f"--filter {pair!r} is not key=value.", fix="e.g. --filter format=markdown.")
        try:
            value = json.loads(raw)
            value = value if isinstance(value, (int, float, bool)) else raw
        except json.JSONDecodeError:
            value = raw
        out.setdefault(key, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()} or None


@app.command("query")
def query(
    name: NameArg,
    text: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, help="Hits to return.")] = 5,
    mode: Annotated[str, typer.Option("--mode", help="dense | bm25 | hybrid.")] = "hybrid",
    mmr: Annotated[bool, typer.Option("--mmr", help="Diversify hits (maximal marginal relevance).")] = False,
    filters: Annotated[
        list[str], typer.Option("--filter", help="key=value metadata filter (repeatable).")
    ] = [],  # noqa: B006
    rerank: Annotated[
        str | None, typer.Option("--rerank", help="Cross-encoder registry id, or 'auto'.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search an index; --json prints one object per hit (source, chunk_id, score, text, ...)."""
    from agentkit.indexes.index import Index

    where = _filter(filters)  # a malformed filter is reported before anything is loaded
    with Index.open(name) as index:
        docs = index.search(text, k=k, mode=mode, mmr=mmr, filter=where, rerank=rerank)
    hits = [
        {
            "rank": d.metadata["rank"],
            "source": d.metadata["source"],
            "chunk_id": d.id,
            "score": d.metadata["score"],
            "position": d.metadata["position"],
            "page": d.metadata.get("page"),
            "text": d.page_content,
        }
        for d in docs
    ]
    if as_json:
        typer.echo(json.dumps(hits, indent=2, ensure_ascii=False))
        return
    if not hits:
        typer.echo("no hits")
    for hit in hits:
        where = f"{hit['source']}#{hit['position']}" + (f" (page {hit['page']})" if hit["page"] else "")
        snippet = " ".join(hit["text"].split())
        typer.echo(
            f"{hit['rank']}. {hit['score']:.4f}  {where}\n   {snippet[:200]}{'...' if len(snippet) > 200 else ''}"
        )

"""What the dashboard pages show, read from where the CLI keeps it: registry cards and their training
logs, the agent runs' traces, the indexes' manifests. Plain dicts for the templates; no HTML here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentkit.registry import Registry
from agentkit.registry.card import EntryKind, ModelCard, flat_metrics

TRAINER_LOG = "trainer_log.json"
RUNS_SHOWN = 200


# ---- registry --------------------------------------------------------------------------------------
def registry_view(registry: Registry) -> dict[str, Any]:
    cards = registry.list()
    aliases: dict[str, list[str]] = {}
    for alias, entry in registry.aliases().items():
        aliases.setdefault(entry["target"], []).append(alias)
    rows = [{**card.summary(), "metrics": headline_metrics(card), "aliases": sorted(aliases.get(card.id, []))}
            for card in cards]  # fmt: skip
    return {"rows": rows, "graph": lineage_graph(cards, aliases)}


def headline_metrics(card: ModelCard) -> dict[str, str]:
    """The scalar metrics of a card (nested ones flattened, e.g. stopped.reason), formatted: what a
    table cell can hold."""
    shown = {}
    for key, value in flat_metrics(card.metrics).items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float):
            shown[key] = f"{value:.4g}"
        elif isinstance(value, (int, str)):
            shown[key] = str(value)
    return shown


def parent_of(card: ModelCard) -> str | None:
    """The entry this one was made from: the adapter it continued, the entry a stage started from,
    the adapter a merge folded, else its base."""
    parent = card.lineage.parent()
    if parent:
        return parent
    if card.source.type == "merge":
        return card.source.ref
    return card.base if card.kind is EntryKind.ADAPTER else None


def lineage_graph(cards: list[ModelCard], aliases: dict[str, list[str]]) -> dict[str, Any]:
    """Entries laid out as a left-to-right tree (a column per generation), edges parent -> child,
    sized for an inline SVG."""
    by_id = {c.id: c for c in cards}
    depth: dict[str, int] = {}

    def depth_of(entry_id: str, seen: frozenset[str] = frozenset()) -> int:
        if entry_id not in depth:
            parent = parent_of(by_id[entry_id])
            ok = parent in by_id and parent not in seen and parent != entry_id
            depth[entry_id] = depth_of(parent, seen | {entry_id}) + 1 if ok else 0  # type: ignore[arg-type]
        return depth[entry_id]

    columns: dict[int, list[str]] = {}
    order = sorted(by_id, key=lambda i: (by_id[i].base or i, by_id[i].created))
    for entry_id in order:
        columns.setdefault(depth_of(entry_id), []).append(entry_id)
    col_w, row_h, box_w, box_h = 260, 46, 230, 32
    nodes, where = [], {}
    for col, ids in sorted(columns.items()):
        for row, entry_id in enumerate(ids):
            x, y = 10 + col * col_w, 10 + row * row_h
            where[entry_id] = (x, y)
            card = by_id[entry_id]
            nodes.append({"id": entry_id, "x": x, "y": y, "w": box_w, "h": box_h, "kind": card.kind.value,
                          "method": card.method or "", "aliases": aliases.get(entry_id, [])})  # fmt: skip
    edges = []
    for entry_id, (x, y) in where.items():
        parent = parent_of(by_id[entry_id])
        if parent in where and parent != entry_id:
            px, py = where[parent]
            edges.append({"x1": px + box_w, "y1": py + box_h / 2, "x2": x, "y2": y + box_h / 2})
    width = 20 + (max(columns) + 1 if columns else 1) * col_w
    height = 20 + max((len(ids) for ids in columns.values()), default=1) * row_h
    return {"nodes": nodes, "edges": edges, "width": width, "height": height}


def known_entry(registry: Registry, entry_id: str) -> ModelCard:
    """The card of an entry the registry holds now. Unlike `registry.card`, a built-in not yet
    installed is not converted: a page view never writes to the registry."""
    from agentkit.errors import UnknownModelError

    if entry_id not in registry:
        raise UnknownModelError(f"No entry {entry_id!r} in the registry.", fix="pick one on the registry page (/).")
    return registry.card(entry_id)


def entry_view(registry: Registry, entry_id: str) -> dict[str, Any]:
    card = known_entry(registry, entry_id)
    folder = registry.entry_dir(entry_id)
    series = training_series(folder / TRAINER_LOG)
    return {
        "card": card,
        "summary": card.summary(),
        "metrics": headline_metrics(card),
        "lineage": json.dumps(card.lineage.model_dump(mode="json", exclude_none=True), indent=1),
        "evaluations": [e.model_dump(mode="json") for e in card.evaluations],
        "parent": parent_of(card),
        "children": [c.id for c in registry.list() if parent_of(c) == entry_id],
        "charts": {name: chart(points) for name, points in series.items()},
        "has_curves_png": (folder / "training_curves.png").is_file(),
    }


def training_series(path: Path) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series of the losses and eval metrics in a trainer log; {} without one."""
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    series: dict[str, list[tuple[float, float]]] = {}
    for entry in history if isinstance(history, list) else []:
        step = entry.get("step") if isinstance(entry, dict) else None
        if not isinstance(step, (int, float)):
            continue
        for key, value in entry.items():
            wanted = key in ("loss", "train_loss", "reward", "kl") or key.startswith("eval_")
            if wanted and isinstance(value, (int, float)) and not isinstance(value, bool) and key != "eval_runtime":
                series.setdefault(key, []).append((float(step), float(value)))
    return {k: v for k, v in series.items() if not k.endswith(("_per_second", "_runtime"))}


def chart(points: list[tuple[float, float]], width: int = 420, height: int = 160, pad: int = 30) -> dict[str, Any]:
    """An SVG polyline for `points`, with the axis ranges to label it."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    line = " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in points)
    return {"points": line, "width": width, "height": height, "pad": pad, "x0": x0, "x1": x1,
            "y0": f"{y0:.4g}", "y1": f"{y1:.4g}", "first": f"{ys[0]:.4g}", "last": f"{ys[-1]:.4g}", "n": len(points)}  # fmt: skip


# ---- agent runs ------------------------------------------------------------------------------------
def runs_view(runs_dir: Path) -> list[dict[str, Any]]:
    from agentkit.agents.trace import RunStore

    store = RunStore(runs_dir)
    rows = []
    for run_id in sorted(store.run_ids(), reverse=True)[:RUNS_SHOWN]:  # ids start with the time: newest first
        try:
            rows.append(store.summary(run_id))
        except (OSError, KeyError, TypeError, ValueError, AttributeError):
            continue  # a trace being written, damaged, or of another version: the list stays up
    return rows


def run_view(runs_dir: Path, run_id: str) -> dict[str, Any]:
    """A run's records for the trace page. Records are shown as far as they hold what the page needs:
    a trace from another version, or one damaged by hand, gives a partial page, not an error."""
    from agentkit.agents.prompting import render_action
    from agentkit.agents.trace import RunStore

    store = RunStore(runs_dir)
    records = store.records(run_id)
    items = []
    for r in records:
        kind = r.get("type")
        if kind == "step":
            arguments = r.get("arguments") if isinstance(r.get("arguments"), dict) else {}
            tokens = r.get("tokens") if isinstance(r.get("tokens"), dict) else {}
            items.append({**r, "tokens": {"input": tokens.get("input", "?"), "output": tokens.get("output", "?")},
                          "rendered": render_action(r.get("action"), arguments),
                          "arguments_json": json.dumps(arguments, indent=1, ensure_ascii=False)})  # fmt: skip
        elif kind == "plan":
            goal = r.get("goal_index")
            steps = [s for s in r.get("steps") or [] if isinstance(s, dict)]
            items.append({**r, "goal_index": goal if isinstance(goal, int) else 0, "steps": steps})
        elif kind in ("resume", "end"):
            items.append(r)
    start = next((r for r in records if r.get("type") == "start"), {})
    try:
        summary = store.summary(run_id)
    except (KeyError, TypeError, ValueError, AttributeError):
        summary = {"run_id": run_id, "name": start.get("name", "?"), "goals": start.get("goals") or [],
                   "status": "unreadable", "steps": "?", "tokens": "?", "seconds": "?"}  # fmt: skip
    return {"summary": summary, "start": start, "records": items}


# ---- indexes ---------------------------------------------------------------------------------------
def indexes_view(registry: Registry) -> list[dict[str, Any]]:
    from agentkit.indexes.index import indexes_dir, list_indexes
    from agentkit.indexes.manifest import Manifest

    rows = []
    for spec in list_indexes(registry.root):
        manifest = Manifest.open(indexes_dir(registry) / spec.name)
        try:
            counts = manifest.counts()
        finally:
            manifest.close()
        rows.append({"name": spec.name, "backend": spec.backend, "embedding": spec.embedding.model, **counts})
    return rows


def index_view(registry: Registry, name: str, query: str | None, mode: str, k: int) -> dict[str, Any]:
    from agentkit.indexes.index import open_index

    with open_index(name, home=registry.root) as index:
        sources = sorted(index.manifest.sources().values(), key=lambda s: s.key)
        hits = []
        if query:
            for doc in index.search(query, mode=mode, k=k):
                meta = doc.metadata
                hits.append({"rank": meta.get("rank"), "score": f"{meta.get('score', 0.0):.4f}",
                             "source": meta.get("source", ""), "text": doc.page_content})  # fmt: skip
        return {"name": name, "stats": index.stats(), "sources": sources, "hits": hits}

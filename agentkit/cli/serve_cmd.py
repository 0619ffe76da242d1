"""`agentkit serve`: the OpenAI-compatible server (chat completions, models, embeddings) on the registry."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to bind. 127.0.0.1 keeps the server on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="AGENTKIT_API_KEY", show_envvar=True,
                     help="Require `Authorization: Bearer KEY` (prefer the variable: a flag shows in `ps`)."),
    ] = None,
    engine: Annotated[str, typer.Option(help="auto | transformers | llamacpp, for every chat model.")] = "auto",
    max_concurrent: Annotated[
        int, typer.Option("--max-concurrent", min=1, help="Generations in flight; one more gets 429.")
    ] = 8,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Cap on a request's max_tokens.")] = 2048,
    runs_dir: Annotated[
        str | None,
        typer.Option("--runs-dir", envvar="AGENTKIT_RUNS", help="The agent runs the dashboard shows (default ./runs)."),
    ] = None,
    fine_tune_max_steps: Annotated[
        int | None,
        typer.Option("--fine-tune-max-steps", min=1, help="Cap on the steps of every fine-tuning job (default: none)."),
    ] = None,
) -> None:
    """Serve registry models over the OpenAI API (/v1/chat/completions, /v1/models, /v1/embeddings, files and
    fine-tuning jobs), and the dashboard at /."""
    from rich.console import Console

    from agentkit.server import ServeSettings, run

    settings = ServeSettings(
        host=host, port=port, api_key=api_key or None, engine=engine, max_concurrent_generations=max_concurrent,
        max_tokens=max_tokens, default_max_tokens=min(max_tokens, ServeSettings().default_max_tokens),
        runs_dir=runs_dir, fine_tune_max_steps=fine_tune_max_steps,
    )
    console = Console(stderr=True)
    if not settings.loopback_only and settings.api_key is None:
        console.print(f"[yellow]warning:[/yellow] serving on {host} without an API key: anyone who can reach "
                      "this port can run your models. Set AGENTKIT_API_KEY.")  # fmt: skip
    locked = "API key required" if settings.api_key else "no API key"
    console.print(f"agentkit serve: http://{host}:{port}/v1 ({locked}), dashboard at http://{host}:{port}/; "
                  "Ctrl-C to stop", soft_wrap=True)  # fmt: skip (the addresses stay whole, to be copied)
    run(settings)

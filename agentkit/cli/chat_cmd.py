"""`agentkit chat MODEL`: one-shot (-m) or an interactive REPL, streaming the reply."""

from __future__ import annotations

from typing import Annotated

import typer


def chat(
    model: Annotated[str, typer.Argument(help="Registry id of a chat model.")] = "smollm2-135m-instruct",
    adapter: Annotated[str | None, typer.Option("--adapter", help="Registry id of an adapter.")] = None,
    message: Annotated[str | None, typer.Option("-m", "--message", help="One message, then exit.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per reply.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
) -> None:
    """Chat with a registry model (REPL without -m; /exit or Ctrl-D to leave)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from rich.console import Console

    from agentkit.models import LocalChatModel
    from agentkit.models.runtime import LoadedModel
    from agentkit.registry import Registry

    console = Console(stderr=True)
    llm = LocalChatModel(
        model=model, adapter=adapter, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    with console.status(f"loading {model} …"):
        registry = Registry.default()
        registry.ensure(model, progress=lambda msg: console.log(msg))
        LoadedModel.get(model, registry)
    history: list = [SystemMessage(system)] if system else []

    def reply(text: str) -> None:
        history.append(HumanMessage(text))
        parts = []
        for chunk in llm.stream(history):
            typer.echo(chunk.content, nl=False)
            parts.append(str(chunk.content))
        typer.echo()
        history.append(AIMessage("".join(parts)))

    if message is not None:
        reply(message)
        return
    console.print(f"[bold]{model}[/bold]{f' + {adapter}' if adapter else ''} — /exit or Ctrl-D to leave")
    while True:
        try:
            text = console.input("[bold green]you>[/bold green] ")
        except EOFError:
            break
        if text.strip() in ("/exit", "/quit"):
            break
        if text.strip():
            reply(text)

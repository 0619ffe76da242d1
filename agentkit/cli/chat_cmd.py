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
    engine: Annotated[
        str, typer.Option("--engine", help="auto | transformers | llamacpp (auto: llama.cpp when the model has a GGUF).")
    ] = "auto",
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            help="Keep the conversation under NAME ($AGENTKIT_HOME/memory); reuse NAME to resume it.",
        ),
    ] = None,
) -> None:
    """Chat with a registry model (REPL without -m; /exit or Ctrl-D to leave)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from rich.console import Console

    from agentkit.models import LocalChatModel
    from agentkit.models.engines import Engine
    from agentkit.registry import Registry

    console = Console(stderr=True)
    if engine not in {e.value for e in Engine}:
        from agentkit.errors import BadInputError

        raise BadInputError(f"Unknown engine {engine!r}.", fix="use --engine auto, transformers or llamacpp.")
    llm = LocalChatModel(
        model=model, adapter=adapter, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
        engine=Engine(engine),
    )
    history: list = [SystemMessage(system)] if system else []
    remembered = None
    if session is not None:  # the last turns come from SQLite; each new turn is appended there
        from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

        from agentkit.memory import ConversationStore, WindowMemory, with_memory

        prompt = ChatPromptTemplate([*history, MessagesPlaceholder("history"), MessagesPlaceholder("input")])
        remembered = with_memory(prompt | llm, WindowMemory(), session=session,
                                 input_messages_key="input", history_messages_key="history")  # fmt: skip
        console.print(f"session {session!r}: {len(ConversationStore().messages(session))} earlier messages")

    with console.status(f"loading {model} …"):
        registry = Registry.default()
        registry.ensure(model, progress=lambda msg: console.log(msg))
        llm.load_runtime(model, adapter)

    def reply(text: str) -> None:
        if remembered is not None:
            stream = remembered.stream({"input": [HumanMessage(text)]})
        else:
            history.append(HumanMessage(text))
            stream = llm.stream(history)
        parts = []
        for chunk in stream:
            typer.echo(chunk.content, nl=False)
            parts.append(str(chunk.content))
        typer.echo()
        if remembered is None:
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

"""The `agentkit` command: wiring only. Each command group lives in its own module and imports
its heavy dependencies inside the command, so `agentkit --help` stays fast."""

from __future__ import annotations

import sys

import typer

from agentkit.cli import (
    ask_cmd,
    chat_cmd,
    classify_cmd,
    improve_cmd,
    index_cmd,
    models_cmd,
    run_cmd,
    runs_cmd,
    serve_cmd,
    tune_cmd,
)

app = typer.Typer(
    name="agentkit",
    help="LangChain apps on models you fine-tune yourself, offline. Registry: $AGENTKIT_HOME.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_cmd.app, name="models")
app.add_typer(index_cmd.app, name="index")
app.command("chat")(chat_cmd.chat)
app.command("tune")(tune_cmd.tune)
app.command("classify")(classify_cmd.classify)
app.command("ask")(ask_cmd.ask)
app.command("run")(run_cmd.run)
app.add_typer(runs_cmd.app, name="runs")
app.command("improve")(improve_cmd.improve)
app.command("serve")(serve_cmd.serve)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, map escaping errors to one line and an exit code."""
    import os

    from agentkit.cli.errors import debug_enabled, report

    # transformers' "Loading weights" bar is noise on a CLI that prints its own progress.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="agentkit", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except BaseException as exc:  # noqa: BLE001 - the CLI's last line of defence
        if isinstance(exc, SystemExit):
            raise
        if debug_enabled():
            raise
        return report(exc)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

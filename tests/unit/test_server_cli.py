"""`agentkit serve` flags and environment -> `ServeSettings`, and the settings' own checks. The server
itself is not started: `agentkit.server.runner.run` is replaced by a recorder."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from agentkit.cli.errors import describe
from agentkit.cli.serve_cmd import serve
from agentkit.server import ServeSettings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ServeSettings]:
    import agentkit.server.runner

    calls: list[ServeSettings] = []
    monkeypatch.setattr(agentkit.server.runner, "run", calls.append)
    monkeypatch.delenv("AGENTKIT_API_KEY", raising=False)
    return calls


def invoke(*args: str, **env: str) -> Any:
    app = typer.Typer()
    app.command()(serve)
    return CliRunner().invoke(app, list(args), env=env or None, catch_exceptions=False)


def test_binds_loopback_on_8000_without_a_key_by_default(started: list[ServeSettings]) -> None:
    result = invoke()
    (settings,) = started
    assert (settings.host, settings.port, settings.api_key) == ("127.0.0.1", 8000, None)
    assert result.exit_code == 0 and "http://127.0.0.1:8000/v1 (no API key)" in result.output


def test_the_key_comes_from_the_environment_or_the_flag(started: list[ServeSettings]) -> None:
    invoke(AGENTKIT_API_KEY="from-env")
    invoke("--api-key", "from-flag", AGENTKIT_API_KEY="from-env")
    assert [s.api_key for s in started] == ["from-env", "from-flag"]


def test_limits_and_engine_reach_the_settings(started: list[ServeSettings]) -> None:
    invoke("--port", "9001", "--max-concurrent", "2", "--max-tokens", "100", "--engine", "transformers")
    (settings,) = started
    assert (settings.port, settings.max_concurrent_generations, settings.max_tokens) == (9001, 2, 100)
    assert settings.default_max_tokens == 100 and settings.engine.value == "transformers"


def test_the_dashboard_runs_folder_and_the_job_step_cap_reach_the_settings(started: list[ServeSettings]) -> None:
    result = invoke("--runs-dir", "/tmp/my-runs", "--fine-tune-max-steps", "50")
    invoke(AGENTKIT_RUNS="/tmp/env-runs")
    assert [(s.runs_dir, s.fine_tune_max_steps) for s in started] == [("/tmp/my-runs", 50), ("/tmp/env-runs", None)]
    assert "dashboard at http://127.0.0.1:8000/" in result.output


def test_another_host_without_a_key_warns(started: list[ServeSettings]) -> None:
    assert "without an API key" in invoke("--host", "0.0.0.0").output
    assert "without an API key" not in invoke("--host", "0.0.0.0", "--api-key", "k").output


def test_settings_refuse_unknown_fields_and_a_default_above_the_cap() -> None:
    with pytest.raises(ValidationError, match="max_body"):
        ServeSettings(max_body=10)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="default_max_tokens"):
        ServeSettings(max_tokens=10, default_max_tokens=20)
    with pytest.raises(ValidationError) as err:
        ServeSettings(engine="vllm")  # type: ignore[arg-type]
    code, line = describe(err.value)
    assert code == 2 and "engine" in line and "\n" not in line


def test_waiting_for_a_server_that_exits_raises_with_its_output() -> None:
    import socket
    import subprocess
    import sys

    from agentkit.errors import AgentkitError
    from agentkit.server.runner import wait_healthy

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", "print('address already in use'); raise SystemExit(3)"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    with pytest.raises(AgentkitError, match=r"(?s)exit 3\).*address already in use"):
        wait_healthy(f"http://127.0.0.1:{port}", process, timeout_s=30, output=lambda: process.stdout.read().decode())

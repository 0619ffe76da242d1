"""Training you can leave running: classification metrics and early stopping, artifacts saved
with the result, a killed run resumed, two processes under `accelerate launch`, and a crash or
full disk while saving that leaves nothing half-registered. Real models, real subprocesses."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agentkit.errors import BadInputError
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.trainer import Run, last_checkpoint

pytestmark = pytest.mark.integration

POSITIVE = ["a wonderful, moving film", "great acting and a lovely story", "i loved every minute of it",
            "brilliant, warm and funny", "a joy to watch", "superb direction and a clever script"]  # fmt: skip
NEGATIVE = ["a dull, boring mess", "terrible acting and a weak plot", "i hated every minute of it",
            "awful, tedious and long", "a waste of time", "painfully bad from start to end"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    root = tmp_path_factory.mktemp("runs")
    home = Registry(root / "home")
    for base in ("minilm-l6", "smollm2-135m-instruct"):
        home.create_entry(base, lambda s, b=base: copy_hf_folder(registry.path(b), s, link=True))
    rows = [{"text": t, "label": "positive"} for t in POSITIVE] + [{"text": t, "label": "negative"} for t in NEGATIVE]
    (root / "sentiment.jsonl").write_text("\n".join(json.dumps(r) for r in rows * 3))
    chat = [{"instruction": f"Say the secret word for item {i}.", "output": f"The secret word is banana-{i % 3}."}
            for i in range(8)]  # fmt: skip
    (root / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in chat))
    return home


def classifier_config(home: Registry, output: str, **train: object) -> dict:
    return {
        "base": "minilm-l6", "task": "sequence_classification", "method": "lora", "lora": {"r": 8},
        "data": {"train": str(home.root.parent / "sentiment.jsonl"), "format": "text_label", "eval_fraction": 0.25},
        "train": {"learning_rate": 5e-3, "batch_size": 4, **train}, "output": output,
    }  # fmt: skip


def cli(home: Registry, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENTKIT_HOME": str(home.root)}
    return subprocess.run([sys.executable, "-m", "agentkit", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def test_classification_evals_accuracy_f1_stops_early_and_saves_curves(home: Registry) -> None:
    # 9 eval rows: accuracy can improve at most 9 times, so patience 2 must stop well before 60 steps.
    config = TuneConfig.model_validate(classifier_config(home, "cls-early", max_steps=60, eval_steps=1,
                                                         early_stopping_patience=2))  # fmt: skip
    run = Run.prepare(config, home)
    metrics = run.fit()
    evals = [e for e in run.history if "eval_loss" in e]
    assert {"eval_accuracy", "eval_f1"} <= set(evals[0]) and 0 <= metrics["eval_f1"] <= 1
    assert metrics["steps"] < 60, "early stopping never stopped the run"
    assert metrics["eval_accuracy"] == max(e["eval_accuracy"] for e in evals)  # the best checkpoint came back
    card = run.register()
    folder = home.path(card.id)
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["final"]["eval_accuracy"] == metrics["eval_accuracy"] and len(saved["evals"]) == len(evals)
    assert (folder / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert card.metrics["eval_f1"] == metrics["eval_f1"]


def test_killed_run_resumes_from_its_last_checkpoint(home: Registry, tmp_path: Path) -> None:
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(classifier_config(home, "cls-resume", max_steps=24, eval_steps=4)))
    env = {**os.environ, "AGENTKIT_HOME": str(home.root)}
    proc = subprocess.Popen([sys.executable, "-m", "agentkit", "tune", str(config), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    run_dir, deadline = home.root / "runs" / "cls-resume", time.monotonic() + 240
    while last_checkpoint(run_dir) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = last_checkpoint(run_dir)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert "cls-resume" not in home  # nothing registered by a killed run

    done = cli(home, "tune", str(config), "--resume", "--no-progress", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads(done.stdout)
    resumed = card["metrics"]["resumed_from_step"]
    assert resumed >= int(killed_at.name.split("-")[-1]) and card["metrics"]["steps"] == 24
    log = json.loads((home.path("cls-resume") / "trainer_log.json").read_text())
    assert [e["step"] for e in log if "loss" in e][:resumed] == list(range(1, resumed + 1))  # history kept


def test_two_processes_under_accelerate_launch_register_a_peft_adapter(home: Registry, tmp_path: Path) -> None:
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({
        "base": "smollm2-135m-instruct", "method": "lora", "lora": {"r": 4},
        "data": {"train": str(home.root.parent / "chat.jsonl"), "eval_fraction": 0},
        "train": {"max_steps": 2, "batch_size": 2, "max_length": 64}, "output": "ddp-lora",
    }))  # fmt: skip
    with socket.socket() as s:  # a free port for the rendezvous, so parallel runs don't collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "AGENTKIT_HOME": str(home.root)}
    out = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
         "-m", "agentkit", "tune", str(config), "--no-progress", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    card = home.card("ddp-lora")
    assert card.lineage.processes == 2 and card.kind.value == "adapter"
    assert sorted(card.weights) == ["adapter_model.safetensors"]
    assert (home.path("ddp-lora") / "adapter_config.json").is_file()
    assert out.stdout.count('"id": "ddp-lora"') == 1  # only the main process reports
    home.verify("ddp-lora")


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_crash_or_full_disk_while_saving_registers_nothing(home: Registry, failure: BaseException,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from agentkit.cli.errors import describe

    output = f"cls-crash-{type(failure).__name__.lower()}"
    run = Run.prepare(TuneConfig.model_validate(classifier_config(home, output, max_steps=1)), home)
    run.fit()

    def save_half(folder: str | Path, **kwargs: object) -> None:
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"half a file")
        raise failure

    monkeypatch.setattr(run.model, "save_pretrained", save_half)
    with pytest.raises(type(failure)) as caught:
        run.register()
    assert output not in home and not (home.root / "models" / output).exists()
    assert not any((home.root / "tmp").iterdir())  # the staging folder is gone too
    if isinstance(failure, OSError):
        code, line = describe(caught.value)
        assert code == 1 and "nothing was registered" in line and "--resume" in line


def test_max_length_shorter_than_every_prompt_is_refused_by_name(home: Registry) -> None:
    config = TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "lora",
        "data": {"train": str(home.root.parent / "chat.jsonl"), "eval_fraction": 0},
        "train": {"max_length": 12}, "output": "too-short",
    })  # fmt: skip
    with pytest.raises(BadInputError, match=r"train\.max_length=12.*Fix: raise train\.max_length"):
        Run.prepare(config, home)


def test_deepspeed_config_without_deepspeed_names_the_install(home: Registry, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here; this checks the message for machines without it")
    ds = tmp_path / "zero2.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}))
    config = TuneConfig.model_validate(classifier_config(home, "cls-ds", max_steps=1, deepspeed=str(ds)))
    with pytest.raises(BadInputError, match="pip install deepspeed"):
        Run.prepare(config, home)

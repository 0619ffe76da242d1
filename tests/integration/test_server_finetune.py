"""Fine-tuning jobs over the OpenAI API (issue 15 §2) on the built-in SmolLM2-135M, driven by the real
`openai` client: upload, create, poll, events with the loss, chat with the result at once; a job
cancelled while it runs ends `cancelled` with nothing registered; and a small DPO job."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from agentkit.registry import Registry
from agentkit.server import ServeSettings, serve_in_thread
from agentkit.server.jobs_runner import _start_token

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
KEY = "sk-agentkit-finetune"
MAX_STEPS = 8  # the server's cap on every job: minutes on 2 CPU cores, not an epoch of real data
JOB_TIMEOUT_S = 900.0

QA = [("What colour is the sky on a clear day?", "Blue."), ("How many legs does a spider have?", "Eight."),
      ("What is the capital of Italy?", "Rome."), ("What is 3 plus 4?", "Seven."),
      ("Which planet do we live on?", "Earth."), ("What do bees make?", "Honey."),
      ("How many days are in a week?", "Seven."), ("What is frozen water called?", "Ice.")]  # fmt: skip
PAIRS = [("How do I boil an egg?", "Put it in boiling water for 9 minutes, then cool it.", "No idea."),
         ("How can I sleep better?", "Keep a regular bedtime and a dark, cool room.", "Figure it out."),
         ("How do I keep bread fresh?", "Keep it in a paper bag in a cool, dry place.", "Eat it faster."),
         ("How do I clean a pan?", "Soak it in hot soapy water, then scrub it.", "Buy a new one.")]  # fmt: skip


@pytest.fixture(scope="module")
def server(registry: Registry) -> Any:
    settings = ServeSettings(port=0, api_key=KEY, max_tokens=64, default_max_tokens=16, fine_tune_max_steps=MAX_STEPS)
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_file(client: openai.OpenAI, tmp_path_factory: pytest.TempPathFactory) -> str:
    rows = [{"messages": [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": q},
                          {"role": "assistant", "content": a}]} for q, a in QA]  # fmt: skip
    path = write_jsonl(tmp_path_factory.mktemp("ft") / "qa.jsonl", rows)
    with open(path, "rb") as handle:
        made = client.files.create(file=handle, purpose="fine-tune")
    assert (made.purpose, made.filename, made.bytes) == ("fine-tune", "qa.jsonl", path.stat().st_size)
    return made.id


def wait_until(client: openai.OpenAI, job_id: str, *statuses: str, timeout_s: float = JOB_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"{job_id} still {job.status} after {timeout_s} s"
        time.sleep(1.0)


def output_of(server: Any, job_id: str) -> str:
    """The registry id a job registers (its tune.yaml's `output`), known before it succeeds."""
    tuning = server.app.state.fine_tuning
    return yaml.safe_load((tuning.root / "jobs" / job_id / "tune.yaml").read_text())["output"]


def test_a_supervised_job_trains_reports_loss_and_chats_at_once(client: openai.OpenAI, chat_file: str,
                                                                registry: Registry) -> None:  # fmt: skip
    job = client.fine_tuning.jobs.create(
        model=BASE, training_file=chat_file, suffix="qa", seed=0,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 5}}},
    )  # fmt: skip
    assert job.status == "queued" and job.method.type == "supervised"
    done = wait_until(client, job.id, "succeeded", "failed", "cancelled")
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model and done.fine_tuned_model.startswith(f"{BASE}-ft-qa-")
    card = registry.card(done.fine_tuned_model)
    assert (card.kind.value, card.base, card.method) == ("adapter", BASE, "lora")
    assert done.trained_tokens == card.metrics["trained_tokens"] > 8 * 10  # 8 rows of more than 10 tokens each

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    losses = [e.data["train_loss"] for e in events if e.type == "metrics" and "train_loss" in (e.data or {})]
    assert len(losses) == 4, events  # 8 rows / batch 2 = 4 steps, under the server's cap of 8
    assert all(math.isfinite(x) and x > 0 for x in losses)
    assert any(e.message == f"New fine-tuned model created: {done.fine_tuned_model}" for e in events)

    assert done.fine_tuned_model in {m.id for m in client.models.list()}
    reply = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=8,
                                           messages=[{"role": "user", "content": "What do bees make?"}])  # fmt: skip
    assert reply.model == done.fine_tuned_model and reply.choices[0].message.content


def test_a_job_cancelled_while_running_registers_nothing(client: openai.OpenAI, chat_file: str, server: Any,
                                                         registry: Registry) -> None:  # fmt: skip
    job = client.fine_tuning.jobs.create(
        model=BASE, training_file=chat_file, suffix="cancel",
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 10, "batch_size": 1}}},
    )  # fmt: skip
    output = output_of(server, job.id)
    wait_until(client, job.id, "running", timeout_s=JOB_TIMEOUT_S)
    time.sleep(2.0)  # the worker is importing torch / loading the model by now
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    assert output not in registry
    assert output not in {m.id for m in client.models.list()}
    assert not list((registry.root / "tmp").glob(f"entry-{output}.*"))  # no half-written entry either
    assert not (registry.root / "runs" / output).exists()
    row = server.app.state.fine_tuning.jobs.db.job(job.id)
    assert _start_token(row["worker_pid"]) is None  # the worker (and its process group) is gone
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert events[0] == "Fine-tuning job cancelled."
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=output, messages=[{"role": "user", "content": "hi"}])
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # twice is not an error


def test_a_dpo_job_trains_on_openai_preference_rows(client: openai.OpenAI, tmp_path: Path, registry: Registry) -> None:
    rows = [{"input": {"messages": [{"role": "user", "content": q}]},
             "preferred_output": [{"role": "assistant", "content": good}],
             "non_preferred_output": [{"role": "assistant", "content": bad}]} for q, good, bad in PAIRS]  # fmt: skip
    with open(write_jsonl(tmp_path / "prefs.jsonl", rows), "rb") as handle:
        pairs = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=BASE, training_file=pairs.id, suffix="dpo",
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 2, "beta": 0.1}}},
    )  # fmt: skip
    done = wait_until(client, job.id, "succeeded", "failed", "cancelled")
    assert done.status == "succeeded", done.error
    assert registry.card(done.fine_tuned_model).method == "dpo"
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert metrics and all("train_loss" in e.data for e in metrics if "valid_loss" not in e.data)

"""Fine-tuning over HTTP (issue 15 §2) with a fake worker and no model: uploads checked row by row,
job requests checked against the files and the registry, jobs run one at a time in a worker process
whose events are tailed, cancel (queued and running), a worker that dies, and a server restart."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from agentkit.registry import Registry, SourceInfo
from agentkit.server import ServeSettings, create_app
from agentkit.server.jobs_runner import _start_token

KEY = "sk-unit"
AUTH = {"Authorization": f"Bearer {KEY}"}
WAIT_S = 30.0  # a fake worker starts a Python; on 2 busy cores that can take seconds

# The fake `agentkit tune`: reads the job's tune.yaml, writes metrics lines, registers a card-only
# entry. Its behaviour is picked by the job's suffix, which is inside the output id.
FAKE_WORKER = r"""
import json, os, signal, sys, time
from pathlib import Path
import yaml
tune, events = Path(sys.argv[1]), Path(sys.argv[2])
config = yaml.safe_load(tune.read_text())
output = config["output"]
mode = next((m for m in ("hang", "fail", "die", "silent", "late") if f"-ft-{m}-" in output), "ok")
def event(step, **data):
    with open(events, "a") as f:
        f.write(json.dumps({"type": "metrics", "step": step, "total_steps": 3, **data}) + "\n")
def register():
    from agentkit.registry import Registry, SourceInfo
    Registry(os.environ["AGENTKIT_HOME"]).create_entry(output, lambda stage: {
        "kind": "adapter", "task": "causal_lm", "base": config["base"], "method": config["method"],
        "source": SourceInfo(type="tuning", ref=str(tune))})
def wait():
    while not (tune.parent / "release").exists():
        time.sleep(0.05)
event(1, train_loss=2.5, learning_rate=0.0002)
if mode == "hang":
    wait()
if mode == "fail":
    print("error: data.train line 3: boom. Fix: fix the row.", file=sys.stderr)
    sys.exit(2)
if mode == "die":
    os.kill(os.getpid(), signal.SIGKILL)
event(2, train_loss=1.5)
event(3, train_loss=0.9)
event(3, valid_loss=1.1)
if mode == "late":  # registered, then cancelled before it exits
    register()
    wait()
elif mode != "silent":
    register()
"""


def fake_worker(tune: Path, events: Path) -> list[str]:
    return [sys.executable, "-c", FAKE_WORKER, str(tune), str(events)]


def chat_row(question: str = "What is 2+2?", answer: str = "4") -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}  # fmt: skip


def pref_row(question: str = "How do I boil an egg?", good: str = "Boil it for 9 minutes.",
             bad: str = "No idea.") -> dict[str, Any]:  # fmt: skip
    return {"input": {"messages": [{"role": "user", "content": question}]},
            "preferred_output": [{"role": "assistant", "content": good}],
            "non_preferred_output": [{"role": "assistant", "content": bad}]}  # fmt: skip


def jsonl(*rows: Any) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    registry = Registry(tmp_path)
    for entry_id, fields in {
        "tiny-chat": {"kind": "base", "task": "causal_lm"},
        "tiny-lora": {"kind": "adapter", "task": "causal_lm", "base": "tiny-chat", "method": "lora"},
        "tiny-embed": {"kind": "base", "task": "embedding"},
    }.items():
        registry.create_entry(entry_id, lambda stage, f=fields: {**f, "source": SourceInfo(type="hf_folder", ref="x")})
    return tmp_path


def make_app(home: Path, **settings: Any) -> Any:
    options = {"home": str(home), "api_key": KEY, **settings}
    return create_app(ServeSettings(**options), job_worker=fake_worker)


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    """No lifespan: the runner does not start, so jobs stay queued (request checks only)."""
    yield TestClient(make_app(home), raise_server_exceptions=False, base_url="http://127.0.0.1:8000")


@pytest.fixture
def running(home: Path) -> Iterator[TestClient]:
    """With the lifespan: the runner starts, recovers, and runs the queue."""
    with TestClient(make_app(home), raise_server_exceptions=False, base_url="http://127.0.0.1:8000") as client:
        yield client


def upload(client: TestClient, body: bytes, *, name: str = "train.jsonl", purpose: str = "fine-tune") -> Any:
    return client.post("/v1/files", files={"file": (name, io.BytesIO(body), "application/jsonl")},
                       data={"purpose": purpose}, headers=AUTH)  # fmt: skip


def file_id(client: TestClient, body: bytes) -> str:
    response = upload(client, body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def create_job(client: TestClient, training_file: str, **body: Any) -> Any:
    return client.post("/v1/fine_tuning/jobs", json={"model": "tiny-chat", "training_file": training_file, **body},
                       headers=AUTH)  # fmt: skip


def job(client: TestClient, training_file: str, **body: Any) -> dict[str, Any]:
    response = create_job(client, training_file, **body)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(client: TestClient, job_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=AUTH).json()
        if found["status"] in statuses:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{job_id} is {found['status']}, not {statuses}: {found}")


def events(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    return client.get(f"/v1/fine_tuning/jobs/{job_id}/events?limit=100", headers=AUTH).json()["data"]


def folder(home: Path, job_id: str) -> Path:
    return home / "server" / "jobs" / job_id


# ---- files --------------------------------------------------------------------------------------
def test_a_chat_file_is_kept_listed_read_and_deleted(client: TestClient, home: Path) -> None:
    body = jsonl(chat_row(), "", chat_row("Capital of France?", "Paris"))
    made = upload(client, body).json()
    assert made | {"id": "x", "created_at": 0} == {
        "id": "x", "object": "file", "bytes": len(body), "created_at": 0, "filename": "train.jsonl",
        "purpose": "fine-tune", "status": "processed", "status_details": None, "expires_at": None}  # fmt: skip
    assert client.get(f"/v1/files/{made['id']}", headers=AUTH).json() == made
    assert [f["id"] for f in client.get("/v1/files", headers=AUTH).json()["data"]] == [made["id"]]
    assert client.get(f"/v1/files/{made['id']}/content", headers=AUTH).content == body
    deleted = client.delete(f"/v1/files/{made['id']}", headers=AUTH).json()
    assert deleted == {"id": made["id"], "object": "file", "deleted": True}
    assert error_of(client.get(f"/v1/files/{made['id']}", headers=AUTH), 404)["code"] == "file_not_found"
    assert list((home / "server" / "files").iterdir()) == []


def test_a_preference_file_and_one_with_tools_are_accepted(client: TestClient) -> None:
    assert upload(client, jsonl(pref_row(), pref_row("Sleep tips?", "Keep a schedule.", "Whatever."))).status_code == 200
    tool = {"type": "function", "function": {"name": "add", "description": "Add.",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}  # fmt: skip
    row = {"tools": [tool], "messages": [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "assistant", "content": "2"}]}  # fmt: skip
    assert upload(client, jsonl(row)).status_code == 200


@pytest.mark.parametrize(("body", "where"), [
    (jsonl(chat_row(), {"messages": [{"role": "bot", "content": "hi"}]}), "line 2, field 'messages[0].role'"),
    (jsonl(chat_row(), "", {"messages": [{"role": "user", "content": "hi"}]}), "line 3, field 'messages'"),
    (jsonl(chat_row(), {"prompt": "hi"}), "line 2, field 'messages'"),
    (jsonl(chat_row(), pref_row()), "line 2: a preference row in a file whose first row is a chat row"),
    (b'{"messages": [}\n', "line 1: not valid JSON"),
    (b"this is not json\n", "line 1: not valid JSON"),
    (jsonl(pref_row(), "", {**pref_row(), "preferred_output": "Boil it."}), "line 3, field 'preferred_output'"),
    (jsonl(pref_row(), {**pref_row(), "input": {"messages": []}}), "line 2, field 'input.messages'"),
    # checked by tuning/preference.py on the converted pair, named back in OpenAI's fields and lines
    (jsonl(pref_row(), "", pref_row(good="Same.", bad="Same.")), "line 3, field 'non_preferred_output[0]'"),
    (jsonl(pref_row(), {**pref_row(), "preferred_output": [{"role": "assistant", "content": 5}]}),
     "line 2, field 'preferred_output[0].content'"),
])  # fmt: skip
def test_a_bad_row_is_refused_naming_its_line_and_field(client: TestClient, home: Path, body: bytes, where: str) -> None:
    error = error_of(upload(client, body, name="mine.jsonl"), 400)
    assert f"mine.jsonl {where}" in error["message"], error
    assert (error["param"], error["code"]) == ("file", "invalid_file")
    assert client.get("/v1/files", headers=AUTH).json()["data"] == []
    assert list((home / "server" / "files").iterdir()) == []  # no temp file left


def test_uploads_outside_the_rules_are_refused(home: Path) -> None:
    client = TestClient(make_app(home, max_upload_bytes=2000), raise_server_exceptions=False, base_url="http://127.0.0.1:8000")
    assert error_of(upload(client, jsonl(chat_row()), purpose="assistants"), 400)["param"] == "purpose"
    assert error_of(upload(client, jsonl(*[chat_row()] * 30)), 413)["code"] == "file_too_large"
    assert error_of(upload(client, b""), 400)["code"] == "invalid_file"
    missing = client.post("/v1/files", data={"purpose": "fine-tune"}, headers=AUTH)
    assert error_of(missing, 400)["param"] == "file"
    extra = client.post("/v1/files", files={"file": ("a.jsonl", io.BytesIO(jsonl(chat_row())))},
                        data={"purpose": "fine-tune", "colour": "red"}, headers=AUTH)  # fmt: skip
    assert error_of(extra, 400)["code"] == "unknown_parameter"
    error_of(client.get("/v1/files/..%2F..%2Fjobs.sqlite", headers=AUTH), 404)  # no route takes a slash
    assert error_of(client.delete("/v1/files/file-..", headers=AUTH), 404)["code"] == "file_not_found"
    assert error_of(client.get("/v1/files?limit=0", headers=AUTH), 400)["param"] == "limit"
    assert client.get("/v1/files", headers={}).status_code == 401


# ---- creating jobs ------------------------------------------------------------------------------
def test_a_supervised_job_is_queued_with_its_tune_yaml(client: TestClient, home: Path) -> None:
    train, valid = file_id(client, jsonl(chat_row())), file_id(client, jsonl(chat_row("1+1?", "2")))
    made = job(client, train, validation_file=valid, suffix="Demo Run", seed=7,
               method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}})  # fmt: skip
    assert made["status"] == "queued" and made["object"] == "fine_tuning.job" and made["fine_tuned_model"] is None
    assert made["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 1.0}}}  # fmt: skip
    assert (made["seed"], made["training_file"], made["validation_file"]) == (7, train, valid)
    config = yaml.safe_load((folder(home, made["id"]) / "tune.yaml").read_text())
    short = made["id"].removeprefix("ftjob-")[:8]
    assert config["output"] == f"tiny-chat-ft-demo-run-{short}"
    assert (config["base"], config["method"], config["lora"]) == ("tiny-chat", "lora", {})
    assert config["data"]["format"] == "openai" and config["data"]["eval_fraction"] == 0
    assert Path(config["data"]["eval"]).read_text() == jsonl(chat_row("1+1?", "2")).decode()
    assert config["train"] | {"learning_rate": 0} == {"epochs": 2, "batch_size": 8, "learning_rate": 0, "seed": 7,
                                                      "logging_steps": 1}  # fmt: skip
    assert [e["message"] for e in events(client, made["id"])][-1] == f"Created fine-tuning job: {made['id']}"


def test_the_servers_step_cap_shortens_jobs_and_never_lengthens_them(home: Path) -> None:
    client = TestClient(make_app(home, fine_tune_max_steps=3), base_url="http://127.0.0.1:8000")
    eight = file_id(client, jsonl(*[chat_row()] * 8))
    for batch_size, epochs, max_steps in ((2, 1, 3), (4, 1, None), (8, 3, None), (8, 4, 3)):
        hyper = {"batch_size": batch_size, "n_epochs": epochs}
        made = job(client, eight, method={"type": "supervised", "supervised": {"hyperparameters": hyper}})
        train = yaml.safe_load((folder(home, made["id"]) / "tune.yaml").read_text())["train"]
        assert train.get("max_steps") == max_steps, (hyper, train)


def test_a_dpo_job_on_an_adapter_trains_pairs_from_it(client: TestClient, home: Path) -> None:
    pairs = file_id(client, jsonl(pref_row()))
    made = job(client, pairs, model="tiny-lora", method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3}}})
    config = yaml.safe_load((folder(home, made["id"]) / "tune.yaml").read_text())
    assert (config["base"], config["method"], config["dpo"]) == ("tiny-lora", "dpo", {"beta": 0.3})
    assert config["output"].startswith("tiny-lora-ft-")
    row = json.loads(Path(config["data"]["train"]).read_text())
    assert row == {"prompt": [{"role": "user", "content": "How do I boil an egg?"}],
                   "chosen": [{"role": "assistant", "content": "Boil it for 9 minutes."}],
                   "rejected": [{"role": "assistant", "content": "No idea."}]}  # fmt: skip


def test_a_supervised_job_on_an_adapter_continues_it(client: TestClient, home: Path) -> None:
    made = job(client, file_id(client, jsonl(chat_row())), model="tiny-lora")
    config = yaml.safe_load((folder(home, made["id"]) / "tune.yaml").read_text())
    assert (config["base"], config["lora"]) == ("tiny-chat", {"init_adapter": "tiny-lora"})


def test_job_requests_that_cannot_run_are_refused_naming_the_field(client: TestClient, home: Path) -> None:
    chat, pairs = file_id(client, jsonl(chat_row())), file_id(client, jsonl(pref_row()))
    cases = [
        ({"model": "no-such-model"}, 404, "model", "model_not_found"),
        ({"model": "tiny-embed"}, 400, "model", "model_not_chat"),
        ({"training_file": "file-doesnotexist"}, 400, "training_file", "file_not_found"),
        ({"validation_file": "../../etc/passwd"}, 400, "validation_file", "file_not_found"),
        ({"training_file": pairs}, 400, "training_file", "invalid_file_format"),
        ({"method": {"type": "dpo"}}, 400, "training_file", "invalid_file_format"),
        ({"validation_file": pairs}, 400, "validation_file", "invalid_file_format"),
        ({"method": {"type": "reinforcement"}}, 400, "method.type", "invalid_value"),
        ({"method": {"type": "supervised", "dpo": {}}}, 400, "method", "invalid_value"),
        ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}}, 400,
         "method.supervised.hyperparameters.n_epochs", "invalid_value"),
        ({"hyperparameters": {"n_epochs": 1}, "method": {"type": "supervised"}}, 400, "body", "invalid_value"),
        ({"integrations": [{"type": "wandb", "wandb": {"project": "x"}}]}, 400, "integrations", "invalid_value"),
        ({"learning_rate": 0.1}, 400, "learning_rate", "unknown_parameter"),
    ]  # fmt: skip
    for body, status, param, code in cases:
        error = error_of(create_job(client, **{"training_file": chat, **body}), status)
        assert (error["param"], error["code"]) == (param, code), (body, error)
    assert client.get("/v1/fine_tuning/jobs", headers=AUTH).json()["data"] == []
    assert not (home / "server" / "jobs").exists() or list((home / "server" / "jobs").iterdir()) == []
    assert error_of(client.get("/v1/fine_tuning/jobs/ftjob-nope", headers=AUTH), 404)["code"] == "fine_tuning_job_not_found"
    malformed = client.post("/v1/fine_tuning/jobs", content=b"{not json", headers=AUTH)
    assert error_of(malformed, 400)["code"] == "invalid_json"


def test_jobs_list_newest_first_in_pages(client: TestClient) -> None:
    chat = file_id(client, jsonl(chat_row()))
    ids = [job(client, chat)["id"] for _ in range(3)]
    first = client.get("/v1/fine_tuning/jobs?limit=2", headers=AUTH).json()
    assert [j["id"] for j in first["data"]] == ids[:0:-1] and first["has_more"] is True
    rest = client.get(f"/v1/fine_tuning/jobs?limit=2&after={first['data'][-1]['id']}", headers=AUTH).json()
    assert [j["id"] for j in rest["data"]] == ids[:1] and rest["has_more"] is False


def test_a_queued_job_is_cancelled_at_once_and_twice_is_fine(client: TestClient) -> None:
    made = job(client, file_id(client, jsonl(chat_row())))
    for _ in range(2):
        assert client.post(f"/v1/fine_tuning/jobs/{made['id']}/cancel", headers=AUTH).json()["status"] == "cancelled"
    assert events(client, made["id"])[0]["message"] == "Fine-tuning job cancelled."


# ---- running jobs -------------------------------------------------------------------------------
def test_a_job_runs_reports_its_loss_and_its_model_chats_at_once(running: TestClient, home: Path) -> None:
    made = job(running, file_id(running, jsonl(chat_row())), suffix="ok")
    done = wait_for(running, made["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["fine_tuned_model"] == f"tiny-chat-ft-ok-{made['id'][6:14]}" and done["finished_at"] is not None
    assert Registry(home).card(done["fine_tuned_model"]).base == "tiny-chat"
    listed = {m["id"] for m in running.get("/v1/models", headers=AUTH).json()["data"]}
    assert done["fine_tuned_model"] in listed  # chat completions resolve it from the registry per request
    found = events(running, made["id"])
    metrics = [e for e in reversed(found) if e["type"] == "metrics"]
    assert [e["data"].get("train_loss") for e in metrics] == [2.5, 1.5, 0.9, None]
    assert metrics[0]["message"] == "Step 1/3: training loss=2.5000" and metrics[0]["data"]["step"] == 1
    assert metrics[-1]["data"] == {"step": 3, "total_steps": 3, "valid_loss": 1.1}
    assert [e["message"] for e in found[:2]] == ["The job has successfully completed.",
                                                 f"New fine-tuned model created: {done['fine_tuned_model']}"]  # fmt: skip
    page = running.get(f"/v1/fine_tuning/jobs/{made['id']}/events?limit=2&after={found[1]['id']}", headers=AUTH).json()
    assert [e["id"] for e in page["data"]] == [e["id"] for e in found[2:4]] and page["has_more"] is True


def test_jobs_run_one_at_a_time_and_a_running_one_is_cancelled(running: TestClient, home: Path) -> None:
    chat = file_id(running, jsonl(chat_row()))
    first, second, third = (job(running, chat, suffix=s) for s in ("hang", "hang", "ok"))
    wait_for(running, first["id"], "running")
    time.sleep(0.5)  # several runner polls: the others must still wait
    waiting = [running.get(f"/v1/fine_tuning/jobs/{j['id']}", headers=AUTH).json()["status"] for j in (second, third)]
    assert waiting == ["queued", "queued"]
    assert running.post(f"/v1/fine_tuning/jobs/{second['id']}/cancel", headers=AUTH).json()["status"] == "cancelled"
    stopped = running.post(f"/v1/fine_tuning/jobs/{first['id']}/cancel", headers=AUTH).json()
    assert stopped["status"] == "cancelled" and stopped["fine_tuned_model"] is None
    output = yaml.safe_load((folder(home, first["id"]) / "tune.yaml").read_text())["output"]
    assert output not in Registry(home)
    pid = running.app.state.fine_tuning.jobs.db.job(first["id"])["worker_pid"]
    assert _start_token(pid) is None  # the worker is gone
    assert wait_for(running, third["id"], "succeeded")["fine_tuned_model"]
    refused = error_of(running.post(f"/v1/fine_tuning/jobs/{third['id']}/cancel", headers=AUTH), 400)
    assert refused["code"] == "job_not_cancellable"


def test_a_job_cancelled_after_its_worker_registered_leaves_no_entry(running: TestClient, home: Path) -> None:
    made = job(running, file_id(running, jsonl(chat_row())), suffix="late")
    output = yaml.safe_load((folder(home, made["id"]) / "tune.yaml").read_text())["output"]
    deadline = time.monotonic() + WAIT_S
    while output not in Registry(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert output in Registry(home)
    assert running.post(f"/v1/fine_tuning/jobs/{made['id']}/cancel", headers=AUTH).json()["status"] == "cancelled"
    assert output not in Registry(home) and not list((home / "tmp").glob("entry-*"))


@pytest.mark.parametrize(("suffix", "reason"), [
    ("fail", "The worker exited with code 2: data.train line 3: boom. Fix: fix the row."),
    ("die", "The worker was killed by SIGKILL (out of memory?)."),
    ("silent", "The worker exited with code 0 without registering the model"),
])  # fmt: skip
def test_a_worker_that_fails_or_dies_fails_its_job_with_the_reason(running: TestClient, suffix: str, reason: str) -> None:
    made = job(running, file_id(running, jsonl(chat_row())), suffix=suffix)
    done = wait_for(running, made["id"], "failed", "succeeded")
    assert done["status"] == "failed" and done["error"]["code"] == "worker_failed"
    assert done["error"]["message"].startswith(reason), done["error"]
    assert events(running, made["id"])[0]["level"] == "error"
    # the queue moves on
    after = job(running, made["training_file"], suffix="ok")
    assert wait_for(running, after["id"], "succeeded", "failed")["status"] == "succeeded"


# ---- restarts -----------------------------------------------------------------------------------
def test_files_jobs_and_events_outlive_a_restart(home: Path) -> None:
    with TestClient(make_app(home), base_url="http://127.0.0.1:8000") as first:
        chat = file_id(first, jsonl(chat_row()))
        done = wait_for(first, job(first, chat, suffix="ok")["id"], "succeeded")
        queued = job(first, chat, suffix="hang")  # running when the server stops: failed, not lost
        wait_for(first, queued["id"], "running")
    with TestClient(make_app(home), base_url="http://127.0.0.1:8000") as second:
        assert [f["id"] for f in second.get("/v1/files", headers=AUTH).json()["data"]] == [chat]
        assert second.get(f"/v1/fine_tuning/jobs/{done['id']}", headers=AUTH).json() == done
        assert any(e["type"] == "metrics" for e in events(second, done["id"]))
        stopped = second.get(f"/v1/fine_tuning/jobs/{queued['id']}", headers=AUTH).json()
        assert stopped["status"] == "failed" and "The server stopped while this job ran" in stopped["error"]["message"]


def test_queued_jobs_run_after_a_restart(home: Path) -> None:
    client = TestClient(make_app(home), base_url="http://127.0.0.1:8000")  # no lifespan: nothing runs
    made = job(client, file_id(client, jsonl(chat_row())), suffix="ok")
    with TestClient(make_app(home), base_url="http://127.0.0.1:8000") as restarted:
        assert wait_for(restarted, made["id"], "succeeded")["fine_tuned_model"]


def _mark_running(home: Path, job_id: str, pid: int, token: str) -> None:
    import sqlite3

    with sqlite3.connect(home / "server" / "jobs.sqlite") as db:
        db.execute("UPDATE jobs SET status = 'running', worker_pid = ?, worker_token = ? WHERE id = ?", (pid, token, job_id))


def test_a_running_job_whose_worker_died_with_the_server_is_failed_on_restart(home: Path) -> None:
    client = TestClient(make_app(home), base_url="http://127.0.0.1:8000")
    made = job(client, file_id(client, jsonl(chat_row())), suffix="ok")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    token = _start_token(gone.pid) or "0"
    gone.wait()
    _mark_running(home, made["id"], gone.pid, token)
    with TestClient(make_app(home), base_url="http://127.0.0.1:8000") as restarted:
        failed = wait_for(restarted, made["id"], "failed", "succeeded")
    assert failed["status"] == "failed" and failed["error"]["message"].startswith("The worker is gone")


def test_a_worker_that_outlived_its_server_is_adopted_on_restart(home: Path) -> None:
    client = TestClient(make_app(home), base_url="http://127.0.0.1:8000")
    made = job(client, file_id(client, jsonl(chat_row())), suffix="hang")
    where = folder(home, made["id"])
    env = {**os.environ, "AGENTKIT_HOME": str(home)}
    orphan = subprocess.Popen(fake_worker(where / "tune.yaml", where / "events.jsonl"), env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not (where / "events.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _mark_running(home, made["id"], orphan.pid, _start_token(orphan.pid) or "")
        with TestClient(make_app(home), base_url="http://127.0.0.1:8000") as restarted:
            time.sleep(0.5)
            assert restarted.get(f"/v1/fine_tuning/jobs/{made['id']}", headers=AUTH).json()["status"] == "running"
            (where / "release").touch()
            done = wait_for(restarted, made["id"], "succeeded", "failed")
            assert done["status"] == "succeeded", done
            steps = [e["data"]["step"] for e in reversed(events(restarted, made["id"])) if e["type"] == "metrics"]
            assert steps == [1, 2, 3, 3]  # each line once, the one written before the restart too
    finally:
        if orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
        orphan.wait()


# ---- the worker's lines -------------------------------------------------------------------------
def test_trainer_logs_become_openai_metrics_events() -> None:
    from agentkit.server.jobs_runner import _event
    from agentkit.server.jobs_worker import metrics_line

    step = metrics_line({"loss": 2.0, "grad_norm": 1.5, "learning_rate": 2e-4, "epoch": 0.5,
                         "num_input_tokens_seen": 4096}, 3, 8)  # fmt: skip
    assert step == {"type": "metrics", "step": 3, "total_steps": 8, "train_loss": 2.0, "grad_norm": 1.5,
                    "learning_rate": 2e-4, "epoch": 0.5}  # fmt: skip
    evaluated = metrics_line({"eval_loss": 1.25, "eval_runtime": 0.3, "eval_samples_per_second": 9.0,
                              "eval_rewards/accuracies": 0.75, "epoch": 1.0}, 8, 8)  # fmt: skip
    assert evaluated == {"type": "metrics", "step": 8, "total_steps": 8, "valid_loss": 1.25,
                         "valid_rewards/accuracies": 0.75}  # fmt: skip
    assert metrics_line({"train_runtime": 12.0, "train_loss": 1.7, "total_flos": 3.0}, 8, 8) is None
    assert metrics_line({"loss": float("nan")}, 1, 8) is None  # JSON has no NaN; a NaN step says nothing
    event = _event(json.dumps(step).encode())
    assert event is not None and event["message"] == "Step 3/8: training loss=2.0000" and "type" not in event["data"]
    assert _event(json.dumps(evaluated).encode())["message"] == "Step 8/8: validation loss=1.2500"
    assert _event(b"not json") is None and _event(b'{"type": "other"}') is None


def test_a_jobs_database_of_schema_1_gains_trained_tokens_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    from agentkit.server.jobs_store import SCHEMA_VERSION, JobsDB, job_object

    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as old:  # the jobs table as schema 1 wrote it, one finished job in it
        old.executescript("""
            CREATE TABLE jobs (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, status TEXT NOT NULL,
                model TEXT NOT NULL, training_file TEXT NOT NULL, validation_file TEXT, suffix TEXT,
                seed INTEGER NOT NULL, method TEXT NOT NULL, output TEXT NOT NULL, folder TEXT NOT NULL,
                metadata TEXT, fine_tuned_model TEXT, error TEXT, started_at INTEGER, finished_at INTEGER,
                worker_pid INTEGER, worker_token TEXT, events_offset INTEGER NOT NULL DEFAULT 0);
            PRAGMA user_version = 1;""")
        method = {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 1}}}  # fmt: skip
        old.execute("INSERT INTO jobs (id, created_at, status, model, training_file, seed, method, output, folder) "
                    "VALUES ('ftjob-1', 1, 'succeeded', 'm', 'file-1', 0, ?, 'out', 'f')", (json.dumps(method),))  # fmt: skip
    for _ in range(2):  # a second open (a second server) finds it done
        db = JobsDB(path)
        db.close()
    with sqlite3.connect(path) as new:
        new.row_factory = sqlite3.Row
        assert new.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        row = dict(new.execute("SELECT * FROM jobs").fetchone())
    assert job_object(row)["trained_tokens"] is None and job_object(row)["status"] == "succeeded"

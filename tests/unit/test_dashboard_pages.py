"""The dashboard's server side without a browser (the browser tests are in
tests/integration/test_dashboard_browser.py): pages render what the registry, the runs and the
trainer logs hold; sign-in with a key; other sites refused; nothing outside the registry served."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentkit.registry import Registry, SourceInfo
from agentkit.server import ServeSettings, create_app
from agentkit.server.dashboard import _local
from agentkit.server.dashboard.views import lineage_graph, parent_of, training_series

KEY = "sk-dash"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cards only: a base, a LoRA on it, a LoRA that continued that one (with a trainer log), an alias."""
    root = tmp_path_factory.mktemp("dash-home")
    registry = Registry(root)

    def entry(entry_id: str, **fields: Any) -> None:
        def write(stage: Path) -> dict[str, Any]:
            if entry_id == "tiny-lora-r2":
                log = [{"loss": 2.0 - 0.25 * i, "step": i + 1} for i in range(4)] + [{"eval_loss": 1.4, "step": 4}]
                (stage / "trainer_log.json").write_text(json.dumps(log))
            return {**fields, "source": SourceInfo(type="hf_folder", ref="x")}

        registry.create_entry(entry_id, write)

    entry("tiny-chat", kind="base", task="causal_lm")
    entry("tiny-lora", kind="adapter", task="causal_lm", base="tiny-chat", method="lora",
          metrics={"train_loss_last": 0.4201, "steps": 14, "stopped": {"reason": "kl_budget"}})  # fmt: skip
    entry("tiny-lora-r2", kind="adapter", task="causal_lm", base="tiny-chat", method="lora",
          lineage={"init_adapter": "tiny-lora"})  # fmt: skip
    registry.promote("tiny-lora-r2", "agent-default")
    return root


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "20261204-120000-demo-0001"
    run.mkdir(parents=True)
    records = [
        {"type": "start", "name": "demo", "goals": ["Add <b>up</b> the numbers."], "model": "m", "strategy": "plan"},
        {"type": "plan", "goal_index": 0, "replan": 0, "steps": [{"intent": "read", "tool": "read_file"}], "seconds": 1},
        {"type": "step", "step": 1, "action": "read_file", "arguments": {"path": "n.txt"}, "observation": "<script>x</script>",
         "ok": True, "refused": False, "critique": ["repeated call"], "tokens": {"input": 5, "output": 2}, "seconds": 0.5},
        {"type": "end", "status": "failed", "steps": 1, "tokens": 7, "seconds": 1.5, "final_answer": None,
         "checks": [{"check": "file_contains sum.txt", "passed": False, "detail": "missing"}]},
    ]  # fmt: skip
    (run / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path / "runs"


def client(home: Path, runs: Path | None = None, **settings: Any) -> TestClient:
    options = {"home": str(home), "runs_dir": str(runs) if runs else None, **settings}
    return TestClient(create_app(ServeSettings(**options)), raise_server_exceptions=False, base_url="http://127.0.0.1:8000")


def test_registry_page_shows_entries_aliases_metrics_and_the_lineage_edges(home: Path) -> None:
    page = client(home).get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in ('data-id="tiny-chat"', 'data-id="tiny-lora-r2"', "agent-default", "train_loss_last=0.4201",
                 "stopped.reason=kl_budget"):  # a nested metric (PPO's stop) flattened
        assert text in page.text
    assert page.text.count('class="edge"') == 2  # tiny-chat -> tiny-lora -> tiny-lora-r2


def test_lineage_follows_the_continued_adapter_then_the_base(home: Path) -> None:
    cards = Registry(home).list()
    by_id = {c.id: c for c in cards}
    assert parent_of(by_id["tiny-lora-r2"]) == "tiny-lora" and parent_of(by_id["tiny-lora"]) == "tiny-chat"
    assert parent_of(by_id["tiny-chat"]) is None
    graph = lineage_graph(cards, {})
    columns = {n["id"]: n["x"] for n in graph["nodes"]}
    assert columns["tiny-chat"] < columns["tiny-lora"] < columns["tiny-lora-r2"]


def test_an_entry_page_draws_its_curves_from_the_trainer_log(home: Path) -> None:
    page = client(home).get("/models/tiny-lora-r2")
    assert page.status_code == 200
    assert 'id="curve-loss"' in page.text and 'id="curve-eval_loss"' in page.text
    assert "loss: 2 → 1.25 over 4 points" in page.text
    assert 'href="/models/tiny-lora"' in page.text  # made from
    series = training_series(Registry(home).entry_dir("tiny-lora-r2") / "trainer_log.json")
    assert series["loss"] == [(1.0, 2.0), (2.0, 1.75), (3.0, 1.5), (4.0, 1.25)]


def test_unknown_entries_and_runs_are_404s_that_name_the_fix(home: Path, runs: Path) -> None:
    web = client(home, runs)
    for path in ("/models/nope", "/runs/nope", "/indexes/nope"):
        reply = web.get(path)
        assert reply.status_code == 404 and reply.json()["error"]["message"], path
    assert web.get("/runs/..%2F..%2Fetc").status_code == 404
    assert web.get("/static/..%2F__init__.py").status_code == 404
    assert web.get("/models/tiny-chat/training_curves.png").status_code == 404  # no file: not someone else's


def test_a_run_page_shows_plan_steps_critique_checks_and_escapes_what_the_tools_returned(home: Path,
                                                                                       runs: Path) -> None:  # fmt: skip
    web = client(home, runs)
    listing = web.get("/runs")
    assert 'data-id="20261204-120000-demo-0001"' in listing.text and "failed" in listing.text
    page = web.get("/runs/20261204-120000-demo-0001").text
    assert "Plan for goal 1" in page and "critique: repeated call" in page and "file_contains sum.txt" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<b>up</b>" not in page


def test_with_a_key_pages_send_the_browser_to_login_and_the_cookie_opens_the_api(home: Path) -> None:
    web = client(home, api_key=KEY)
    first = web.get("/jobs", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/jobs"
    wrong = web.post("/login", data={"key": "nope", "next": "/jobs"}, follow_redirects=False)
    assert wrong.headers["location"].startswith("/login?failed=1") and "agentkit_key" not in wrong.cookies
    assert web.get("/v1/models").status_code == 401
    signed = web.post("/login", data={"key": KEY, "next": "/jobs"}, follow_redirects=False)
    assert signed.headers["location"] == "/jobs"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert web.get("/jobs").status_code == 200
    assert web.get("/v1/models").status_code == 200  # the cookie stands in for the header


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil.example", "jobs"])
def test_after_login_only_a_path_of_this_server(target: str) -> None:
    assert _local(target) == "/"
    assert _local("/runs/x") == "/runs/x"


def test_a_change_sent_from_another_site_is_refused_before_it_runs(home: Path) -> None:
    web = client(home)
    body = {"model": "tiny-chat", "training_file": "file-x"}
    for origin in ("http://evil.example", "null", "http://127.0.0.1:8000.evil.example", "http://127.0.0.1:9999"):
        reply = web.post("/v1/fine_tuning/jobs", json=body, headers={"Origin": origin})
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "cross_origin", origin
    # its own pages (same origin), and programs that send no Origin, go on to the route
    assert web.post("/v1/fine_tuning/jobs", json=body, headers={"Origin": "http://127.0.0.1:8000"}).status_code == 400
    assert web.post("/v1/fine_tuning/jobs", json=body).status_code == 400
    assert web.get("/", headers={"Origin": "http://evil.example"}).status_code == 200  # reading changes nothing


def test_every_page_renders_on_an_empty_home(tmp_path: Path) -> None:
    web = client(tmp_path / "empty", tmp_path / "no-runs")
    for path, text in (("/", "The registry is empty"), ("/jobs", "No jobs yet"), ("/runs", "No runs yet"),
                       ("/indexes", "No indexes yet"), ("/playground", "Chat playground")):  # fmt: skip
        page = web.get(path)
        assert page.status_code == 200 and text in page.text, path


def test_a_bad_search_names_the_field(home: Path) -> None:
    error = client(home).get("/indexes/x?q=a&mode=fuzzy").json()["error"]
    assert error["param"] == "mode" and "hybrid, dense, bm25" in error["message"]


def test_signed_out_a_page_does_no_work_and_a_view_never_installs_a_model(home: Path) -> None:
    web = client(home, api_key=KEY)
    for path in ("/models/smollm2-135m-instruct", "/indexes/x?q=hi", "/runs/nope", "/models/nope"):
        reply = web.get(path, follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next="), path
    assert "smollm2-135m-instruct" not in Registry(home)
    # signed in, an entry page is a read: a built-in not installed is a 404, not a conversion
    web.post("/login", data={"key": KEY, "next": "/"}, follow_redirects=False)
    assert web.get("/models/smollm2-135m-instruct").status_code == 404
    assert "smollm2-135m-instruct" not in Registry(home)


def test_the_cookie_holds_a_token_not_the_key(home: Path) -> None:
    web = client(home, api_key=KEY)
    reply = web.post("/login", data={"key": KEY, "next": "/"}, follow_redirects=False)
    token = reply.cookies["agentkit_key"]
    assert token and KEY not in token and len(token) == 64
    forged = client(home, api_key=KEY)
    forged.cookies.set("agentkit_key", KEY)  # the key itself is not a session
    assert forged.get("/v1/models").status_code == 401


def test_another_host_name_and_a_cross_site_fetch_are_refused(home: Path) -> None:
    web = client(home)
    rebound = web.get("/", headers={"Host": "evil.example:8000"})  # DNS rebinding: same origin, wrong host
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "untrusted_host"
    assert web.get("/", headers={"Host": "localhost:8000"}).status_code == 200
    crossed = web.post("/v1/files", headers={"Sec-Fetch-Site": "cross-site"})
    assert crossed.status_code == 403 and crossed.json()["error"]["code"] == "cross_origin"


def test_pages_may_not_be_framed_by_other_sites(home: Path) -> None:
    headers = client(home).get("/").headers
    assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]


def test_a_damaged_trace_gives_a_partial_page_not_an_error(home: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20261204-130000-damaged-0002"
    run.mkdir(parents=True)
    lines = [b'{"type": "start", "name": "damaged", "goals": ["g"]}', b"\xff\xfe not utf-8", b"5", b'{"no": "type"}',
             b'{"type": "plan", "steps": [{"intent": "x", "tool": null}, 3]}',
             b'{"type": "step", "step": 1, "action": "calculator", "ok": true}']  # fmt: skip
    (run / "trace.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    web = client(home, tmp_path / "runs")
    assert web.get("/runs").status_code == 200
    page = web.get("/runs/20261204-130000-damaged-0002")
    assert page.status_code == 200 and "Plan for goal 1" in page.text and "calculator" in page.text


def test_a_search_k_that_is_not_a_number_names_the_field(home: Path) -> None:
    error = client(home).get("/indexes/x?q=a&k=abc").json()["error"]
    assert error["param"] == "k"

"""The dashboard (issue 15 §3) in a real browser: Debian's chromium driven by playwright, against a
real `agentkit serve` (uvicorn on 127.0.0.1) on the built-in SmolLM2-135M. Each page is loaded,
screenshotted and checked; a tuning job is started from the page and watched to the end; a run's
trace is opened; an index is queried; the playground streams a reply.

The tests run in file order, as a user would click through: the job's adapter is then on the
registry page and in the playground. Set AGENTKIT_SCREENSHOT_DIR to keep the screenshots."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkit.registry import Registry
from agentkit.server import ServeSettings, serve_in_thread

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
KEY = "sk-agentkit-dashboard"
MAX_STEPS = 16  # the job below trains 16 rows, batch 1: steps enough to watch the curve grow
JOB_TIMEOUT_MS = 900_000
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium's own connections (updates, sync, safe browsing) fail on a closed network, many at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip

QA = [("What colour is the sky on a clear day?", "Blue."), ("How many legs does a spider have?", "Eight."),
      ("What is the capital of Italy?", "Rome."), ("What is 3 plus 4?", "Seven."),
      ("Which planet do we live on?", "Earth."), ("What do bees make?", "Honey."),
      ("How many days are in a week?", "Seven."), ("What is frozen water called?", "Ice.")] * 2  # fmt: skip


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("AGENTKIT_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-runs")


@pytest.fixture(scope="module")
def server(registry: Registry, runs_dir: Path) -> Iterator[Any]:
    settings = ServeSettings(port=0, api_key=KEY, runs_dir=str(runs_dir), max_tokens=64, default_max_tokens=32,
                             fine_tune_max_steps=MAX_STEPS)  # fmt: skip
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def site(server: Any) -> str:
    return server.base_url.removesuffix("/v1")


@pytest.fixture(scope="module")
def page(site: str) -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        message = "Debian's chromium is not installed: apt-get install chromium (`make install` does, as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.errors = errors
        yield tab
        browser.close()


def snap(page: Any, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_a_signed_out_browser_is_sent_to_login_and_a_wrong_key_is_refused(page: Any, site: str, shots: Path) -> None:
    page.goto(f"{site}/jobs")
    assert page.url.startswith(f"{site}/login")
    page.fill("#key", "not-the-key")
    page.click("button[type=submit]")
    assert page.locator("#login-error").is_visible()
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site}/jobs")  # back where it was going, signed in
    assert page.locator("h1").inner_text() == "Tuning jobs"
    snap(page, shots, "login-then-jobs")


def test_registry_lists_entries_with_a_lineage_graph(page: Any, site: str, shots: Path, registry: Registry) -> None:
    page.goto(f"{site}/")
    rows = page.locator("#registry-table tbody tr")
    ids = [rows.nth(i).get_attribute("data-id") for i in range(rows.count())]
    assert sorted(ids) == sorted(c.id for c in registry.list())
    assert page.locator(f'#registry-table tr[data-id="{BASE}"] td').nth(1).inner_text() == "base"
    assert page.locator("#lineage g.node").count() == len(ids)
    snap(page, shots, "registry")


def test_a_job_started_from_the_page_shows_a_live_loss_curve_and_finishes(page: Any, site: str, shots: Path,
                                                                         tmp_path: Path, registry: Registry) -> None:  # fmt: skip
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                            + "\n" for q, a in QA), encoding="utf-8")  # fmt: skip
    page.goto(f"{site}/jobs")
    page.select_option("#job-model", BASE)
    page.set_input_files("#job-file", str(data))
    page.select_option("#job-method", "supervised")
    page.fill("#job-epochs", "1")
    page.fill("#job-batch", "1")
    page.fill("#job-lr", "5")
    page.fill("#job-suffix", "dash")
    page.click("#job-start")
    page.wait_for_url(f"{site}/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[1]

    # Live: the curve has points while the job still runs (a 16-step job, polled every second).
    page.wait_for_function(
        """() => { const line = document.querySelector('#loss-chart polyline.train');
                   const status = document.getElementById('job-status').textContent;
                   return (line && status === 'running') || ['succeeded', 'failed', 'cancelled'].includes(status); }""",
        timeout=JOB_TIMEOUT_MS,
    )  # fmt: skip
    assert page.locator("#job-status").inner_text() == "running", "the job ended before its curve was seen running"
    snap(page, shots, "job-running")
    page.wait_for_selector("#job[data-final]", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#job-status").inner_text() == "succeeded", page.locator("#job-error-text").inner_text()
    assert page.locator("#loss-chart polyline.train").get_attribute("data-points") == str(MAX_STEPS)
    assert "training loss" in page.locator("#loss-caption").inner_text()
    messages = page.locator("#events tbody tr td:nth-child(3)").all_inner_texts()
    output = page.locator("#job-model a").inner_text()
    assert f"New fine-tuned model created: {output}" in messages and any(m.startswith("Step 16/") for m in messages)
    assert page.errors == []
    snap(page, shots, "job-done")

    # The result's page: its card and the curves from its trainer log; on the registry, an edge to it.
    page.click("#job-model a")
    page.wait_for_url(f"{site}/models/{output}")
    assert page.locator("#training-curves polyline.series").count() >= 1
    card = registry.card(output)
    assert (card.base, card.method) == (BASE, "lora")
    page.goto(f"{site}/")
    assert page.locator(f'#lineage g.node[data-id="{output}"]').count() == 1
    assert page.locator("#lineage path.edge").count() >= 1
    snap(page, shots, "registry-with-adapter")
    test_a_job_started_from_the_page_shows_a_live_loss_curve_and_finishes.job = (job_id, output)  # type: ignore[attr-defined]


def test_fake_model_run_trace_shows_plan_steps_checks_and_final_status(page: Any, site: str, shots: Path,
                                                                      runs_dir: Path, tmp_path: Path) -> None:  # fmt: skip
    # A scripted model writes the run: what is under test is the page that shows its trace.
    from agentkit import Agent
    from agentkit.agents.fake import ScriptedChatModel

    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "prices.txt").write_text("12.50\n30\n7.25\n", encoding="utf-8")
    plan = {"steps": [{"intent": "read the prices", "tool": "read_file"}, {"intent": "add them up", "tool": "calculator"},
                      {"intent": "write the total", "tool": "write_file"}]}  # fmt: skip
    script = [("read_file", {"path": "prices.txt"}), ("calculator", {"expression": "12.50 + 30 + 7.25"}),
              ("write_file", {"path": "total.txt", "content": "49.75"})]  # fmt: skip
    agent = Agent(model=ScriptedChatModel(script=script, plans=[plan]), workspace=workspace, runs_dir=runs_dir,
                  strategy="plan", goals=["Read prices.txt, add up the prices and write the total to total.txt."],
                  checks=[{"file_contains": "total.txt", "text": "49.75"}])  # fmt: skip
    result = agent.run()
    assert result.status == "succeeded"

    page.goto(f"{site}/runs")
    page.click(f'#runs-table tr[data-id="{result.run_id}"] a')
    page.wait_for_url(f"{site}/runs/{result.run_id}")
    assert page.locator("#run-status").inner_text() == "succeeded"
    assert page.locator("#trace li.plan li").all_inner_texts()[0].startswith("read the prices")
    steps = page.locator("#trace li.step")
    assert steps.count() == 3
    assert steps.nth(1).locator(".action code").inner_text() == "calculator"
    assert "49.75" in steps.nth(1).locator(".observation").inner_text()
    page.locator("#trace li.step").nth(2).locator("summary").click()  # the arguments, folded by default
    assert '"content": "49.75"' in steps.nth(2).locator("details pre").inner_text()
    assert page.locator("#checks td.ok").inner_text() == "pass"
    snap(page, shots, "run-trace")


def test_an_index_shows_its_files_and_answers_a_query_with_scores(page: Any, site: str, shots: Path,
                                                                  registry: Registry, tmp_path: Path) -> None:  # fmt: skip
    from agentkit.indexes import create_index, remove_index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "rabbits.md").write_text("# Rabbits\n\nRabbits eat carrots and hay.\n", encoding="utf-8")
    (corpus / "bees.md").write_text("# Bees\n\nBees make honey from nectar.\n", encoding="utf-8")
    (corpus / "ships.txt").write_text("Ships carry containers across the sea.\n", encoding="utf-8")
    name = "dashboard-docs"
    index = create_index(name, splitter={"chunk_size": 200, "chunk_overlap": 0}, home=registry.root)
    try:
        index.add([corpus])
        index.close()
        page.goto(f"{site}/indexes")
        page.click(f"#indexes-table a:text-is('{name}')")
        assert sorted(page.locator("#sources tbody td:first-child").all_inner_texts()) == sorted(
            str((corpus / f).resolve()) for f in ("bees.md", "rabbits.md", "ships.txt")
        ) or page.locator("#sources tbody tr").count() == 3
        page.fill("#query", "what do rabbits eat")
        page.click("#query-form button[type=submit]")
        page.wait_for_selector("#hits li")
        first = page.locator("#hits li").first
        assert "carrots" in first.locator("pre").inner_text()
        assert float(first.locator(".score").inner_text().split()[-1]) > 0
        snap(page, shots, "index-query")
    finally:
        remove_index(name, home=registry.root)


def test_the_playground_streams_a_reply_from_the_base_and_from_the_new_adapter(page: Any, site: str,
                                                                              shots: Path) -> None:  # fmt: skip
    page.goto(f"{site}/playground")
    page.select_option("#chat-base", BASE)
    page.fill("#chat-max", "32")  # within the server's cap of 64 (a request above it gets a 400)
    page.fill("#chat-input", "Say hello in three words.")
    with page.expect_request("**/v1/chat/completions") as sent:
        page.click("#chat-send")
    body = json.loads(sent.value.post_data)
    assert (body["model"], body["stream"], "tools" in body) == (BASE, True, False)
    page.wait_for_selector(".msg.assistant[data-done], #chat-error:not([hidden])")
    assert page.locator("#chat-error").is_hidden(), page.locator("#chat-error").inner_text()
    assert page.locator(".msg.assistant .text").last.inner_text().strip()

    job = getattr(test_a_job_started_from_the_page_shows_a_live_loss_curve_and_finishes, "job", None)
    if job is not None:  # the adapter the job test made: picked per request on the same base
        page.select_option("#chat-adapter", job[1])
    page.check("#chat-tools")
    page.fill("#chat-input", "What is 23 * 19?")
    with page.expect_request("**/v1/chat/completions") as sent:
        page.click("#chat-send")
    body = json.loads(sent.value.post_data)
    assert body["tools"][0]["function"]["name"] == "calculator" and len(body["messages"]) == 3
    if job is not None:
        assert body["model"] == job[1]
    page.wait_for_selector(".msg.assistant[data-done] >> nth=1", state="attached")
    reply = page.locator(".msg.assistant").last
    assert reply.locator(".text").inner_text().strip()
    assert page.locator("#chat-error").is_hidden() and page.errors == []
    snap(page, shots, "playground")

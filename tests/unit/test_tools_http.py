"""http_fetch against a local http.server: HTML as text, the size cap, http(s) only, allow_hosts on
the URL and on every redirect hop, HTTP errors and timeouts as observations."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkit.tools import ToolContext, build_tools, invoke_tool

PAGE = b"<html><head><style>p{}</style><script>var x=1;</script></head><body><h1>Otters</h1><p>They eat fish.</p></body></html>"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/page": (200, "text/html; charset=utf-8", PAGE),
            "/big": (200, "text/plain", b"z" * 100_000),
            "/bin": (200, "application/octet-stream", b"\x00" * 100),
            "/json": (200, "application/json", b'{"answer": 42}'),
        }
        if self.path == "/away":
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.invalid/page")
            self.end_headers()
            return
        if self.path == "/home":
            self.send_response(302)
            self.send_header("Location", "/page")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(30)  # a daemon thread: the module's teardown does not wait for it
        status, kind, body = routes.get(self.path, (404, "text/plain", b"missing"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client of /slow hangs up on purpose; its broken pipe is expected


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fetch(tmp_path: Path, **options: object):
    options.setdefault("allow_private", True)  # the test server is on 127.0.0.1
    tool = build_tools([{"name": "http_fetch", "enabled": True, **options}], ToolContext(tmp_path))[0]
    return lambda url: invoke_tool(tool, {"url": url}, timeout_s=30)


def test_html_comes_back_as_text(tmp_path: Path, base_url: str) -> None:
    out = _fetch(tmp_path)(f"{base_url}/page")
    assert out.ok and out.output.splitlines() == ["Otters", "They eat fish."]
    assert _fetch(tmp_path)(f"{base_url}/json").output == '{"answer": 42}'


def test_size_cap_and_binary(tmp_path: Path, base_url: str) -> None:
    out = _fetch(tmp_path, max_bytes=1000)(f"{base_url}/big")
    assert out.ok and out.output.startswith("z" * 1000) and out.output.endswith("[... truncated]")
    assert len(out.output) < 1100
    binary = _fetch(tmp_path)(f"{base_url}/bin")
    assert binary.ok and "not text" in binary.output and "\x00" not in binary.output


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x", "127.0.0.1/page"])
def test_only_http_and_https(tmp_path: Path, url: str) -> None:
    out = _fetch(tmp_path)(url)
    assert not out.ok and "not http or https" in out.error and "root:" not in out.output


def test_allow_hosts(tmp_path: Path, base_url: str) -> None:
    refused = _fetch(tmp_path, allow_hosts=["example.com"])(f"{base_url}/page")
    assert not refused.ok and "'127.0.0.1' is not in allow_hosts" in refused.error
    assert _fetch(tmp_path, allow_hosts=["127.0.0.1"])(f"{base_url}/page").ok


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254", "10.0.0.1", "[::1]"])
def test_private_addresses_need_an_explicit_allow(tmp_path: Path, host: str) -> None:
    out = _fetch(tmp_path, allow_private=False)(f"http://{host}:9/latest/meta-data")
    assert not out.ok and "local or private address" in out.error and "allow_private" in out.error


def test_a_private_host_listed_by_name_is_allowed(tmp_path: Path, base_url: str) -> None:
    assert _fetch(tmp_path, allow_private=False, allow_hosts=["127.0.0.1"])(f"{base_url}/page").ok


def test_redirects_are_checked_against_allow_hosts(tmp_path: Path, base_url: str) -> None:
    fetch = _fetch(tmp_path, allow_hosts=["127.0.0.1"])
    assert fetch(f"{base_url}/home").output.startswith("Otters")  # a redirect that stays is followed
    out = fetch(f"{base_url}/away")
    assert not out.ok and "'elsewhere.invalid' is not in allow_hosts" in out.error


def test_http_errors_and_timeouts_are_observations(tmp_path: Path, base_url: str) -> None:
    missing = _fetch(tmp_path)(f"{base_url}/nothing")
    assert not missing.ok and "HTTP 404" in missing.error
    start = time.monotonic()
    slow = _fetch(tmp_path, timeout_s=0.5)(f"{base_url}/slow")
    assert not slow.ok and "timed out" in slow.error and time.monotonic() - start < 15  # not the 30 s

"""The `http_fetch` tool (off by default): GET an http(s) URL with a timeout and a size cap, optionally
only from `allow_hosts`; every redirect hop is checked the same way. HTML comes back as its text."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool


class FetchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_hosts: list[str] | None = Field(
        default=None,
        description="host names it may fetch from (exact, or '.example.com' for subdomains); none: any",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="seconds per request")
    max_bytes: int = Field(default=500_000, gt=0, description="bytes read from the body; the rest is cut")
    max_chars: int = Field(default=4000, gt=0, description="characters returned")
    allow_private: bool = Field(
        default=False, description="allow loopback / private / link-local addresses (local services)"
    )


def _private_addresses(host: str) -> list[str]:
    """The loopback / private / link-local addresses `host` resolves to (a literal IP is itself)."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []  # unresolvable: the request itself fails with a clear message
    found = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            found.append(str(address))
    return found


def check_url(url: str, options: FetchOptions) -> str:
    """`url` when it is http(s) to an allowed host, else a ToolError naming the rule. Hosts inside
    this machine's networks (127.0.0.1, 10.x, 169.254.x: local services, cloud metadata) are refused
    unless `allow_private` is set or the host is listed by name in `allow_hosts`."""
    parts = urllib.parse.urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https"):
        raise ToolError(f"URL {url!r} is not http or https.", fix="fetch an http:// or https:// URL.")
    host = (parts.hostname or "").lower()
    if not host:
        raise ToolError(f"URL {url!r} has no host.", fix="give a full URL, e.g. https://example.com/page")
    allowed = [h.lower() for h in options.allow_hosts or []]
    listed = any(host == h or (h.startswith(".") and host.endswith(h)) for h in allowed)
    if options.allow_hosts is not None and not listed:
        raise ToolError(f"host {host!r} is not in allow_hosts ({', '.join(allowed) or 'none'}).",
                        fix="fetch from an allowed host, or add it to allow_hosts in the goal.")  # fmt: skip
    if not options.allow_private and host not in allowed:
        private = _private_addresses(host)
        if private:
            raise ToolError(
                f"host {host!r} is a local or private address ({private[0]}).",
                fix="list the host by name in allow_hosts, or set allow_private: true, in the goal.",
            )
    return parts.geturl()


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, options: FetchOptions) -> None:
        self.options = options

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        # a redirect must not lead out of allow_hosts, to a private address or to another scheme
        check_url(urllib.parse.urljoin(req.full_url, newurl), self.options)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _as_text(body: bytes, content_type: str, charset: str | None) -> str:
    text = body.decode(charset or "utf-8", errors="replace")
    if "html" in content_type:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "noscript"]):
            tag.decompose()
        text = "\n".join(line for line in (s.strip() for s in soup.get_text("\n").splitlines()) if line)
    return text


def fetch(url: str, options: FetchOptions) -> str:
    url = check_url(url, options)
    opener = urllib.request.build_opener(_CheckedRedirects(options))
    request = urllib.request.Request(url, headers={"User-Agent": "agentkit-http-fetch/0.1"})
    try:
        with opener.open(request, timeout=options.timeout_s) as response:
            body = response.read(options.max_bytes + 1)
            content_type = response.headers.get_content_type()
            charset = response.headers.get_content_charset()
            status = response.status
    except ToolError:
        raise
    except urllib.error.HTTPError as exc:
        raise ToolError(f"GET {url} answered HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ToolError(f"GET {url} failed: {reason}.") from None
    cut = len(body) > options.max_bytes
    body = body[: options.max_bytes]
    if not (content_type.startswith("text/") or content_type in ("application/json", "application/xml")
            or content_type.endswith(("+json", "+xml"))):  # fmt: skip
        return f"HTTP {status}: {content_type}, {len(body)}{'+' if cut else ''} bytes (not text; not shown)"
    text = _as_text(body, content_type, charset)
    if len(text) > options.max_chars or cut:
        text = text[: options.max_chars] + "\n[... truncated]"
    return text


def _build(context: ToolContext, options: FetchOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def http_fetch(url: str) -> str:
        """Fetch a web page (GET) and return its text."""
        return fetch(url, options)

    return StructuredTool.from_function(
        http_fetch,
        name="http_fetch",
        description="Fetch a web page and return its text.",
        metadata={"timeout_s": options.timeout_s * 2 + 5.0},  # connect + read, each up to timeout_s
    )


register_tool(ToolFactory("http_fetch", _build, "it reaches the network", FetchOptions, off_by_default=True))

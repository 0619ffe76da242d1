"""The dashboard at `/`: server-rendered pages over the registry, the tuning jobs, the agent runs and
the indexes, plus a chat playground. Pages read what the CLI writes; what a page *does* (start a job,
chat) goes through the same /v1 API the `openai` client uses, from a small script (static/dashboard.js).

With an API key set, a browser signs in once at /login: an HttpOnly, SameSite=Strict cookie then holds a
token derived from the key (never the key: cookies ignore ports, so other local services see them),
which the /v1 routes accept like the header. Sign-in is checked before a page does any work."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from agentkit.errors import AgentkitError
from agentkit.registry import Registry
from agentkit.server.dashboard import views
from agentkit.server.errors import ApiError
from agentkit.server.jobs import FineTuning
from agentkit.server.settings import ServeSettings

COOKIE = "agentkit_key"
STATIC = Path(__file__).parent / "static"
PAGES = ("registry", "jobs", "runs", "indexes", "playground")
SEARCH_MODES = ("hybrid", "dense", "bm25")
# No framing by other sites (a click tricked through an iframe), no script or style but our own files.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'"}  # fmt: skip
LOGIN_FORM_BYTES = 4096


class _SignIn(Exception):
    """Raised before a page does any work when the browser has not signed in: a 303 to /login."""

    def __init__(self, target: str) -> None:
        self.target = target


def session_token(api_key: str) -> str:
    """What the sign-in cookie holds: an HMAC of the key, so the cookie never carries the key itself."""
    return hmac.new(api_key.encode(), b"agentkit-dashboard-session", hashlib.sha256).hexdigest()


def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("agentkit.server.dashboard", "templates"),
                      autoescape=select_autoescape(default=True))  # fmt: skip
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    return env


def signed_in(request: Request, settings: ServeSettings) -> bool:
    if settings.api_key is None:
        return True
    given = request.cookies.get(COOKIE, "")
    return bool(given) and secrets.compare_digest(given.encode(), session_token(settings.api_key).encode())


def install_dashboard(app: FastAPI, settings: ServeSettings, registry: Registry, tuning: FineTuning) -> None:
    """The pages (behind sign-in when a key is set), /login and /static."""

    async def require_sign_in(request: Request) -> None:
        if not signed_in(request, settings):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _SignIn(target)

    @app.exception_handler(_SignIn)
    async def to_login(_: Request, exc: _SignIn) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.target, safe='/')}", status_code=303)

    app.include_router(_pages(settings, registry, tuning), dependencies=[Depends(require_sign_in)])
    app.include_router(_public(settings))


def _pages(settings: ServeSettings, registry: Registry, tuning: FineTuning) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = _templates()
    runs_dir = Path(settings.runs_dir) if settings.runs_dir else None

    async def page(request: Request, template: str, active: str, **context: Any) -> Response:
        html = env.get_template(template).render(active=active, pages=PAGES, **context)
        return HTMLResponse(html, headers=PAGE_HEADERS)

    async def off_loop(function: Any, *args: Any) -> Any:
        """Registry and index reads touch disk (and an index loads its embedding model): not on the loop.
        A missing entry, run or index is a 404 page, in one line that names the fix."""
        try:
            return await asyncio.to_thread(function, *args)
        except AgentkitError as exc:
            raise ApiError(404, str(exc), code="not_found") from None

    @router.get("/", response_class=HTMLResponse)
    async def registry_page(request: Request) -> Response:
        return await page(request, "registry.html", "registry", view=await off_loop(views.registry_view, registry))

    @router.get("/models/{entry_id}", response_class=HTMLResponse)
    async def entry_page(request: Request, entry_id: str) -> Response:
        view = await off_loop(views.entry_view, registry, entry_id)
        return await page(request, "entry.html", "registry", view=view)

    @router.get("/models/{entry_id}/training_curves.png")
    async def curves_png(entry_id: str) -> Response:
        await off_loop(views.known_entry, registry, entry_id)  # an id the registry has: never a caller's path
        path = registry.entry_dir(entry_id) / "training_curves.png"
        if not path.is_file():
            raise ApiError(404, f"{entry_id} has no training curves: it was not trained here.", code="not_found")
        return FileResponse(path, media_type="image/png")

    @router.get("/jobs", response_class=HTMLResponse)
    async def jobs_page(request: Request) -> Response:
        from agentkit.server.catalog import list_chat_models

        jobs = await asyncio.to_thread(tuning.jobs.list, after=None, limit=100)
        files = await asyncio.to_thread(tuning.files.list, purpose="fine-tune", after=None, limit=100, order="desc")
        models = await asyncio.to_thread(list_chat_models, registry)
        return await page(request, "jobs.html", "jobs", jobs=jobs["data"], files=files["data"],
                          models=[m["id"] for m in models])  # fmt: skip

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job_page(request: Request, job_id: str) -> Response:
        job = await asyncio.to_thread(tuning.jobs.get, job_id)  # 404 in OpenAI's shape for an unknown id
        return await page(request, "job.html", "jobs", job=job)

    @router.get("/runs", response_class=HTMLResponse)
    async def runs_page(request: Request) -> Response:
        rows = await off_loop(views.runs_view, runs_dir)
        return await page(request, "runs.html", "runs", runs=rows, runs_dir=str(runs_dir or "runs"))

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str) -> Response:
        return await page(request, "run.html", "runs", view=await off_loop(views.run_view, runs_dir, run_id))

    @router.get("/indexes", response_class=HTMLResponse)
    async def indexes_page(request: Request) -> Response:
        return await page(request, "indexes.html", "indexes", indexes=await off_loop(views.indexes_view, registry))

    @router.get("/indexes/{name}", response_class=HTMLResponse)
    async def index_page(request: Request, name: str, q: str = "", mode: str = "hybrid", k: str = "5") -> Response:
        if mode not in SEARCH_MODES or not k.isdigit() or not 1 <= int(k) <= 50:
            raise ApiError(400, f"Invalid search: mode {mode!r}, k {k!r}. Fix: mode is one of "
                           f"{', '.join(SEARCH_MODES)} and k a whole number from 1 to 50.",
                           param="mode" if mode not in SEARCH_MODES else "k")  # fmt: skip
        view = await off_loop(views.index_view, registry, name, q.strip() or None, mode, int(k))
        return await page(request, "index.html", "indexes", view=view, q=q, mode=mode, k=int(k), modes=SEARCH_MODES)

    @router.get("/playground", response_class=HTMLResponse)
    async def playground_page(request: Request) -> Response:
        from agentkit.server.catalog import list_chat_models

        models = await asyncio.to_thread(list_chat_models, registry)
        return await page(request, "playground.html", "playground", models=models)

    return router


def _public(settings: ServeSettings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = _templates()

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise ApiError(404, f"No dashboard file {name!r}.", code="unknown_url")
        kind = {".js": "text/javascript", ".css": "text/css"}.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=kind)

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(next: str = "/", failed: int = 0) -> Response:
        html = env.get_template("login.html").render(active="", pages=(), next=_local(next), failed=bool(failed),
                                                     keyed=settings.api_key is not None)  # fmt: skip
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @router.post("/login")
    async def login(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > LOGIN_FORM_BYTES:
            raise ApiError(413, f"The sign-in form is limited to {LOGIN_FORM_BYTES} bytes.", code="request_too_large")
        form = await request.form(max_files=0, max_fields=4)
        key, target = str(form.get("key", "")), _local(str(form.get("next", "/")))
        if settings.api_key is not None and not secrets.compare_digest(key.encode(), settings.api_key.encode()):
            return RedirectResponse(f"/login?failed=1&next={quote(target, safe='/?=&')}", status_code=303)
        reply = RedirectResponse(target, status_code=303)
        if settings.api_key is not None:
            reply.set_cookie(COOKIE, session_token(settings.api_key), httponly=True, samesite="strict", path="/",
                             secure=request.url.scheme == "https")  # fmt: skip
        return reply

    return router


def _local(target: str) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"

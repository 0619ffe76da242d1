"""`create_app(settings)`: the FastAPI app. Wiring only: the key check, the body limit, OpenAI-shaped
errors for every failure, and one route per endpoint calling chat.py / embeddings.py / catalog.py
(fine-tuning's files and jobs: jobs_routes.py)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from agentkit.registry import Registry
from agentkit.server import schemas
from agentkit.server.catalog import list_chat_models
from agentkit.server.chat import ChatModelFactory, ChatService, local_chat_model
from agentkit.server.dashboard import COOKIE, install_dashboard, session_token
from agentkit.server.embeddings import embed
from agentkit.server.errors import ApiError, bad_request, from_exception, model_not_found
from agentkit.server.jobs import FineTuning
from agentkit.server.jobs_routes import fine_tuning_routes
from agentkit.server.jobs_runner import WorkerCommand
from agentkit.server.settings import ServeSettings


def create_app(settings: ServeSettings | None = None, *, chat_model: ChatModelFactory | None = None,
               job_worker: WorkerCommand | None = None) -> FastAPI:  # fmt: skip
    """The server for `settings`; `chat_model` replaces LocalChatModel and `job_worker` the
    `agentkit tune` process of a fine-tuning job (tests pass fakes)."""
    settings = settings or ServeSettings()
    registry = Registry(settings.home)
    tuning = FineTuning(settings, registry, job_worker)
    # One thread per admitted generation: the gate in ChatService admits no more than the pool holds.
    pool = ThreadPoolExecutor(settings.max_concurrent_generations, thread_name_prefix="agentkit-generate")
    chat = ChatService(settings, registry, pool, chat_model or local_chat_model(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(tuning.start)  # queued jobs run; a job whose worker died is failed
        yield
        await asyncio.to_thread(tuning.stop)
        pool.shutdown(wait=False, cancel_futures=True)

    # No /docs: its page loads scripts from a CDN, and the API is OpenAI's, documented there.
    app = FastAPI(title="agentkit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.chat = chat
    app.state.fine_tuning = tuning
    _install_error_handlers(app)

    async def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        cookie = request.cookies.get(COOKIE)
        if not given and cookie and secrets.compare_digest(cookie.encode(), session_token(settings.api_key).encode()):
            return  # the dashboard, signed in at /login
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "Missing API key. Fix: send the header `Authorization: Bearer KEY` (the key "
                           "`agentkit serve` was started with).", code="invalid_api_key")  # fmt: skip
        if not secrets.compare_digest(given.strip().encode(), settings.api_key.encode()):
            raise ApiError(401, "Incorrect API key provided. Fix: use the key `agentkit serve` was started with.",
                           code="invalid_api_key")  # fmt: skip

    async def read_json(request: Request) -> Any:
        """The body as JSON: 413 past max_body_bytes (checked before it is all read), 400 if not JSON."""
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise _too_large(len(body), limit)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise bad_request(f"We could not parse the JSON body of your request ({exc}). Fix: send a JSON object "
                              "with Content-Type: application/json.", code="invalid_json") from None  # fmt: skip

    keyed = [Depends(require_key)]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=keyed)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": await asyncio.to_thread(list_chat_models, registry)}

    @app.get("/v1/models/{model_id:path}", dependencies=keyed)
    async def model(model_id: str) -> dict[str, Any]:
        for entry in await asyncio.to_thread(list_chat_models, registry):
            if entry["id"] == model_id:
                return entry
        raise model_not_found(model_id)

    @app.post("/v1/chat/completions", dependencies=keyed, response_model=None)
    async def chat_completions(request: Request) -> dict[str, Any] | StreamingResponse:
        body = schemas.parse(schemas.ChatCompletionRequest, await read_json(request))
        if not body.stream:
            return await chat.complete(body, lambda: client_gone(request))
        events = await chat.stream(body)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip

    @app.post("/v1/embeddings", dependencies=keyed)
    async def embeddings(request: Request) -> dict[str, Any]:
        body = schemas.parse(schemas.EmbeddingRequest, await read_json(request))
        try:
            return await asyncio.to_thread(embed, body, registry, settings)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - an engine failure becomes an OpenAI-shaped reply
            raise from_exception(exc, failed="The embedding model") from None

    app.include_router(fine_tuning_routes(tuning, read_json, keyed))  # /v1/files, /v1/fine_tuning/jobs
    install_dashboard(app, settings, registry, tuning)  # /, /jobs, /runs, /indexes, /playground
    _refuse_other_sites(app, settings)
    return app


def _refuse_other_sites(app: FastAPI, settings: ServeSettings) -> None:
    """Pages of other sites may not drive this server from a visitor's browser.

    - A request that changes something (POST, DELETE) and names another origin (`Origin`, or
      `Sec-Fetch-Site: cross-site / same-site`) gets 403. The openai client and curl send neither.
    - Bound to loopback, a request whose Host is not a loopback name gets 403 too: a site whose
      name was re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with itself, not with us."""

    @app.middleware("http")
    async def same_origin(request: Request, call_next: Any) -> Any:
        host = request.headers.get("host", "")
        if settings.loopback_only and _host_name(host) not in _LOOPBACK_NAMES:
            return _forbidden(f"Host {host!r} is not this machine's loopback address. Fix: use "
                              f"http://127.0.0.1:{settings.port}/, or serve with --host for other names.",
                              code="untrusted_host")  # fmt: skip
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            fetch_site = request.headers.get("sec-fetch-site", "")
            crossed = origin is not None and (origin == "null" or origin.split("://", 1)[-1].rstrip("/") != host)
            if crossed or fetch_site in ("cross-site", "same-site"):
                return _forbidden(f"Requests from {origin or 'another site'} may not use this server: only its own "
                                  "pages may. Fix: call it from a program (no Origin header) or from its dashboard.",
                                  code="cross_origin")  # fmt: skip
        return await call_next(request)


_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def _host_name(host: str) -> str:
    """`127.0.0.1:8000` -> `127.0.0.1`, `[::1]:8000` -> `::1`; any 127.x address counts as 127.0.0.1."""
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return "127.0.0.1" if name.startswith("127.") and name.replace(".", "").isdigit() else name.lower()


def _forbidden(message: str, *, code: str) -> JSONResponse:
    return JSONResponse(ApiError(403, message, code=code).body(), status_code=403)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"The request body ({size} bytes or more) is above this server's limit of {limit} bytes. "
                    "Fix: send less, or start `agentkit serve` with a larger max_body_bytes.",
                    code="request_too_large")  # fmt: skip


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects. `Request.is_disconnected()` cannot see that through an
    `@app.middleware("http")` (Starlette's BaseHTTPMiddleware; encode/starlette discussion 2094): the
    ASGI messages after the body can, and the only one left to come is `http.disconnect`."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _install_error_handlers(app: FastAPI) -> None:
    def reply(error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        if error.status == 429:
            headers = {"Retry-After": "1"}
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return reply(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Routing errors (404 for an unknown path, 405 for a wrong method) in OpenAI's shape too.
        message = f"{request.method} {request.url.path}: {exc.detail}."
        return reply(ApiError(exc.status_code, message, code="unknown_url" if exc.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return reply(from_exception(exc))

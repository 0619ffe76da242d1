"""The HTTP routes of fine-tuning: /v1/files and /v1/fine_tuning/jobs. Wiring only: parse the
request (multipart with a byte limit, query parameters, the JSON body), call files.py / jobs.py off
the event loop, and let every refusal be OpenAI's error shape naming the parameter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.responses import FileResponse
from starlette.datastructures import FormData, UploadFile

from agentkit.server import schemas
from agentkit.server.errors import ApiError, bad_request
from agentkit.server.jobs import FineTuning
from agentkit.server.jobs_config import CreateJobRequest

ReadJson = Callable[[Request], Awaitable[Any]]


def fine_tuning_routes(tuning: FineTuning, read_json: ReadJson, dependencies: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(dependencies))
    upload_limit = tuning.settings.max_upload_bytes

    # ---- files --------------------------------------------------------------------------------------
    @router.post("/v1/files")
    async def create_file(request: Request) -> dict[str, Any]:
        form = await _form(request, upload_limit)
        try:
            for name in form:
                if name not in ("file", "purpose"):
                    raise bad_request(f"Unrecognized request argument supplied: {name}.", name, code="unknown_parameter")
            upload, purpose = form.get("file"), form.get("purpose")
            if not isinstance(upload, UploadFile):
                raise bad_request("Missing required parameter: file (a multipart file part with the JSONL).", "file",
                                  code="missing_required_parameter")  # fmt: skip
            if not isinstance(purpose, str):
                raise bad_request("Missing required parameter: purpose (use 'fine-tune').", "purpose",
                                  code="missing_required_parameter")  # fmt: skip
            return await asyncio.to_thread(tuning.files.create, upload.file, upload.filename or "upload.jsonl", purpose)
        finally:
            await form.close()

    @router.get("/v1/files")
    async def list_files(request: Request) -> dict[str, Any]:
        query = _query(request, ("purpose", "after", "limit", "order"))
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request(f"Invalid order {order!r}: use 'asc' or 'desc'.", "order", code="invalid_value")
        return await asyncio.to_thread(tuning.files.list, purpose=query.get("purpose"), after=query.get("after"),
                                       limit=_limit(query, 10000, 10000), order=order)  # fmt: skip

    @router.get("/v1/files/{file_id}")
    async def get_file(file_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(tuning.files.get, file_id)

    @router.get("/v1/files/{file_id}/content", response_model=None)
    async def file_content(file_id: str) -> FileResponse:
        record = await asyncio.to_thread(tuning.files.record, file_id)
        return FileResponse(tuning.files.path(record["id"]), media_type="application/jsonl", filename=record["filename"])

    @router.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(tuning.files.delete, file_id)

    # ---- jobs ---------------------------------------------------------------------------------------
    @router.post("/v1/fine_tuning/jobs")
    async def create_job(request: Request) -> dict[str, Any]:
        body = schemas.parse(CreateJobRequest, await read_json(request))
        # Off the loop: a built-in base is converted into the registry on first use (~20 s).
        return await asyncio.to_thread(tuning.jobs.create, body)

    @router.get("/v1/fine_tuning/jobs")
    async def list_jobs(request: Request) -> dict[str, Any]:
        query = _query(request, ("after", "limit"))
        return await asyncio.to_thread(tuning.jobs.list, after=query.get("after"), limit=_limit(query, 20, 100))

    @router.get("/v1/fine_tuning/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(tuning.jobs.get, job_id)

    @router.get("/v1/fine_tuning/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request) -> dict[str, Any]:
        query = _query(request, ("after", "limit"))
        return await asyncio.to_thread(tuning.jobs.events, job_id, after=query.get("after"), limit=_limit(query, 20, 100))

    @router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(tuning.jobs.cancel, job_id)  # waits for a running worker to stop

    return router


async def _form(request: Request, limit: int) -> FormData:
    """The multipart form, refused with 413 past `limit` bytes: by Content-Length before reading,
    and by counting while it streams (a chunked upload declares none)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    seen = 0

    async def receive() -> Any:
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _too_large(seen, limit)
        return message

    # A text field past 1 MiB is no purpose; one file part only.
    return await Request(request.scope, receive).form(max_files=1, max_fields=8)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"The upload ({size} bytes or more) is above this server's limit of {limit} bytes. Fix: "
                    "upload less, or start the server with a larger max_upload_bytes.", param="file",
                    code="file_too_large")  # fmt: skip


def _query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    # Parsed here rather than as FastAPI parameters, whose errors are 422s in FastAPI's own shape.
    for name in request.query_params:
        if name not in allowed:
            raise bad_request(f"Unrecognized query parameter: {name}. This endpoint takes {', '.join(allowed)}.",
                              name, code="unknown_parameter")  # fmt: skip
    return dict(request.query_params)


def _limit(query: dict[str, str], default: int, most: int) -> int:
    """`limit`: OpenAI's defaults and caps (files 10000; jobs and events 20, at most 100)."""
    text = query.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise bad_request(f"Invalid limit {text!r}: use a whole number from 1 to {most}.", "limit",
                          code="invalid_value")  # fmt: skip
    return int(text)

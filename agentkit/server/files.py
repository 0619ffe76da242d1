"""POST/GET/DELETE /v1/files: uploaded fine-tuning files under $AGENTKIT_HOME/server/files/, each
checked before it is kept (files_format.py) and published by rename, so a listed file is whole."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import IO, Any

from agentkit.errors import BadInputError
from agentkit.server.errors import ApiError, bad_request
from agentkit.server.files_format import inspect_file
from agentkit.server.jobs_store import JobsDB, file_object, new_id, page

PURPOSE = "fine-tune"  # the one purpose this server keeps files for
# A file id becomes a path: anything else (`../x`, `file-a/b`) is no file of ours.
FILE_ID = re.compile(r"file-[A-Za-z0-9]{1,64}")


class FileService:
    def __init__(self, db: JobsDB, folder: Path) -> None:
        self.db = db
        self.folder = folder

    def path(self, file_id: str) -> Path:
        return self.folder / f"{file_id}.jsonl"

    def create(self, source: IO[bytes], filename: str, purpose: str) -> dict[str, Any]:
        """Copy `source` to a temp file, check its rows, then rename it into place and record it.
        A refused file leaves nothing behind."""
        if purpose != PURPOSE:
            raise bad_request(f"Invalid purpose {purpose!r}: this server keeps files for fine-tuning only. "
                              f"Fix: send purpose={PURPOSE!r}.", "purpose", code="invalid_value")  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".upload-{uuid.uuid4().hex}.jsonl"
        try:
            with open(tmp, "wb") as handle:
                shutil.copyfileobj(source, handle, 1 << 20)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                found = inspect_file(tmp, filename)
            except BadInputError as exc:
                raise bad_request(exc.one_line(), "file", code="invalid_file") from None
            file_id = new_id("file")
            os.replace(tmp, self.path(file_id))
        finally:
            tmp.unlink(missing_ok=True)
        row = self.db.add_file(id=file_id, filename=filename[:255], bytes=self.path(file_id).stat().st_size,
                               created_at=int(time.time()), purpose=purpose, format=found.format.value,
                               rows=found.rows)  # fmt: skip
        return file_object(row)

    def record(self, file_id: str, *, param: str = "file_id", status: int = 404) -> dict[str, Any]:
        """The stored row of `file_id` (its format and row count too), or the error that names it:
        404 for a path's id, 400 for an id in a request body (as OpenAI answers a job's `training_file`)."""
        row = self.db.file(file_id) if FILE_ID.fullmatch(file_id) else None
        if row is None:
            raise ApiError(status, f"No such File object: {file_id!r}. Fix: GET /v1/files lists the files of this "
                           "server.", param=param, code="file_not_found")  # fmt: skip
        return row

    def get(self, file_id: str) -> dict[str, Any]:
        return file_object(self.record(file_id))

    def list(self, *, purpose: str | None, after: str | None, limit: int, order: str) -> dict[str, Any]:
        rows, more = self.db.files(purpose=purpose, after=after, limit=limit, newest_first=order == "desc")
        return page([file_object(r) for r in rows], more)

    def delete(self, file_id: str) -> dict[str, Any]:
        # Jobs keep copies of their data (jobs.py), so deleting a file never breaks a queued job.
        self.record(file_id)
        self.db.delete_file(file_id)
        self.path(file_id).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

"""Fine-tuning jobs, OpenAI-style, on this machine. `FineTuning` owns $AGENTKIT_HOME/server/ (the
database, the files, the job folders, the runner); `JobService` checks a job request and writes its
folder: the job's own copy of its data and the tune.yaml its worker runs."""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.registry import Registry
from agentkit.server.catalog import chat_target
from agentkit.server.errors import ApiError, bad_request
from agentkit.server.files import FileService
from agentkit.server.files_format import RowFormat, write_dpo_rows
from agentkit.server.jobs_config import CreateJobRequest, output_id, tune_config
from agentkit.server.jobs_runner import TUNE_FILE, JobRunner, WorkerCommand, agentkit_tune
from agentkit.server.jobs_store import CANCELLED, FINAL, QUEUED, JobsDB, event_object, job_object, new_id, page
from agentkit.server.settings import ServeSettings

JOB_ID_PREFIX = "ftjob-"


@dataclass
class _Opened:
    db: JobsDB
    files: FileService
    jobs: JobService
    runner: JobRunner


class FineTuning:
    """Opened on first use (or at server start), so an app that never serves a file or a job
    writes nothing under $AGENTKIT_HOME/server."""

    def __init__(self, settings: ServeSettings, registry: Registry, worker: WorkerCommand | None = None) -> None:
        self.settings, self.registry = settings, registry
        self.root = registry.root / "server"
        self.worker = worker or agentkit_tune
        self._opened: _Opened | None = None
        self._lock = threading.Lock()

    def _open(self) -> _Opened:
        with self._lock:
            if self._opened is None:
                db = JobsDB(self.root / "jobs.sqlite")
                files = FileService(db, self.root / "files")
                runner = JobRunner(db, self.registry, self.root / "runner.lock", self.worker)
                self._opened = _Opened(db, files, JobService(self.settings, self.registry, db, files, runner), runner)
            return self._opened

    @property
    def files(self) -> FileService:
        return self._open().files

    @property
    def jobs(self) -> JobService:
        return self._open().jobs

    def start(self) -> None:
        self._open().runner.start()

    def stop(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.runner.stop()
            opened.db.close()


class JobService:
    def __init__(self, settings: ServeSettings, registry: Registry, db: JobsDB, files: FileService,
                 runner: JobRunner) -> None:  # fmt: skip
        self.settings, self.registry, self.db, self.files, self.runner = settings, registry, db, files, runner
        self.folder = registry.root / "server" / "jobs"

    def create(self, request: CreateJobRequest) -> dict[str, Any]:
        """Check the files, the method and the model, write the job's folder, queue it."""
        method = request.resolved_method()
        rows = RowFormat.CHAT if method["type"] == "supervised" else RowFormat.PREFERENCE
        train = self._data_file(request.training_file, "training_file", rows)
        valid = self._data_file(request.validation_file, "validation_file", rows) if request.validation_file else None
        target = chat_target(self.registry, request.model)  # 404 for an unknown model, 400 for one that cannot chat
        job_id = new_id(JOB_ID_PREFIX.rstrip("-"))
        output = output_id(target.adapter or target.base, request.suffix, job_id)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        folder = self.folder / job_id
        folder.mkdir(parents=True)
        try:
            # The job's own copies: deleting an uploaded file later never breaks a queued job.
            train_copy = self._copy(train, folder / "train.jsonl", rows)
            valid_copy = self._copy(valid, folder / "valid.jsonl", rows) if valid else None
            config = tune_config(method=method, base=target.base, adapter=target.adapter, train=train_copy,
                                 rows=train["rows"], valid=valid_copy, seed=seed, output=output,
                                 max_steps=self.settings.fine_tune_max_steps)  # fmt: skip
            _write_tune_yaml(folder / TUNE_FILE, config)
            created = self.db.add_job({
                "id": job_id, "created_at": _now(), "status": QUEUED, "model": request.model,
                "training_file": train["id"], "validation_file": valid["id"] if valid else None,
                "suffix": request.suffix, "seed": seed, "method": _json(method), "output": output,
                "folder": str(folder), "metadata": _json(request.metadata) if request.metadata else None,
            }, messages=[f"Created fine-tuning job: {job_id}",
                         f"Validated training file: {train['id']} ({train['rows']} rows)",
                         "Files validated, moving job to queued state"])  # fmt: skip
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.runner.wake()
        return job_object(created)

    def _data_file(self, file_id: str, param: str, rows: RowFormat) -> dict[str, Any]:
        record = self.files.record(file_id, param=param, status=400)
        held = RowFormat(record["format"])
        if held is not rows:
            raise bad_request(
                f"Invalid {param} {file_id!r}: it holds {held.value} rows, which method {rows.method!r} cannot "
                f"train on. Fix: use method.type {held.method!r} for this file, or upload {rows.value} rows "
                f"({rows.layout}).", param, code="invalid_file_format",
            )  # fmt: skip
        return record

    def _copy(self, record: dict[str, Any], target: Path, rows: RowFormat) -> Path:
        source = self.files.path(record["id"])
        if rows is RowFormat.PREFERENCE:
            write_dpo_rows(source, target)
        else:
            shutil.copyfile(source, target)
        return target

    # ---- reading ----------------------------------------------------------------------------------
    def _row(self, job_id: str) -> dict[str, Any]:
        row = self.db.job(job_id) if job_id.startswith(JOB_ID_PREFIX) else None
        if row is None:
            raise ApiError(404, f"No fine-tuning job {job_id!r}. Fix: GET /v1/fine_tuning/jobs lists the jobs of "
                           "this server.", param="fine_tuning_job_id", code="fine_tuning_job_not_found")  # fmt: skip
        return row

    def get(self, job_id: str) -> dict[str, Any]:
        return job_object(self._row(job_id))

    def list(self, *, after: str | None, limit: int) -> dict[str, Any]:
        rows, more = self.db.jobs(after=after, limit=limit)
        return page([job_object(r) for r in rows], more)

    def events(self, job_id: str, *, after: str | None, limit: int) -> dict[str, Any]:
        self._row(job_id)
        rows, more = self.db.events(job_id, after=after, limit=limit)
        return page([event_object(r) for r in rows], more)

    # ---- cancel -----------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any]:
        """A queued job is cancelled at once; a running one once its worker stopped (up to ~10 s)."""
        row = self._row(job_id)
        cancelled = [("info", "Fine-tuning job cancelled.")]
        if row["status"] == QUEUED and self.db.finish(job_id, CANCELLED, from_status=(QUEUED,), messages=cancelled):
            return self.get(job_id)
        if self.runner.cancel(job_id):  # it ran here (or had just started when the line above looked)
            return self.get(job_id)
        row = self._row(job_id)
        if row["status"] == CANCELLED:
            return job_object(row)  # cancelling twice is not an error
        if row["status"] in FINAL:
            raise bad_request(f"Job {job_id} has already {row['status']}; only queued or running jobs can be "
                              "cancelled.", "fine_tuning_job_id", code="job_not_cancellable")  # fmt: skip
        # Running, but not here: a worker of another `agentkit serve` on this home (runner.lock).
        raise ApiError(409, f"Job {job_id} runs under another `agentkit serve` on this AGENTKIT_HOME. Fix: "
                       "cancel it through that server.", code="job_not_cancellable")  # fmt: skip


def _write_tune_yaml(path: Path, config: dict[str, Any]) -> None:
    import yaml

    from agentkit.tuning.config import TuneConfig

    TuneConfig.model_validate(config)  # the worker must not be the first to find a bad config
    path.write_text("# Written by agentkit serve for a fine-tuning job; the worker runs `agentkit tune` on it.\n"
                    + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")  # fmt: skip


def _json(value: Any) -> str:
    return json.dumps(value)


def _now() -> int:
    return int(time.time())

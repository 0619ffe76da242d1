"""`JobRunner`: runs the queued fine-tuning jobs one at a time, each in a worker process of its own
(process group: cancel stops it and its children), tails the worker's events into the database, and
settles the job from what the worker left: a registry entry (succeeded) or an error (failed).

A worker that outlives its server (the server crashed) is adopted by the next server on this home,
recognised by its pid and the kernel's start time, so a restart never fails a job that still runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.registry import Registry
from agentkit.server.jobs_store import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobsDB

log = logging.getLogger(__name__)

# (tune.yaml, events file) -> the worker's argv; tests pass a fake that writes events and registers.
WorkerCommand = Callable[[Path, Path], list[str]]
TUNE_FILE, EVENTS_FILE, LOG_FILE = "tune.yaml", "events.jsonl", "worker.log"
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL: a trainer between steps exits well within this


def agentkit_tune(tune: Path, events: Path) -> list[str]:
    return [sys.executable, "-m", "agentkit.server.jobs_worker", str(tune), str(events)]


def _start_token(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid it
    names one process for good, since the OS reuses pids. None when no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "(comm)", which may hold spaces
    return None if fields[0] == "Z" else fields[19]  # a zombie has exited: only its exit status is left


@dataclass
class _Worker:
    job_id: str
    output: str
    folder: Path
    pid: int
    token: str | None
    offset: int  # bytes of the events file already stored
    proc: subprocess.Popen[bytes] | None  # None when adopted from an earlier server

    def exit_code(self) -> tuple[bool, int | None]:
        """(exited, code); an adopted worker's code is unknown (it was not our child)."""
        if self.proc is not None:
            code = self.proc.poll()
            return code is not None, code
        return _start_token(self.pid) != self.token, None


class JobRunner:
    def __init__(self, db: JobsDB, registry: Registry, lock_path: Path, command: WorkerCommand = agentkit_tune,
                 poll_s: float = 0.25) -> None:  # fmt: skip
        self.db, self.registry, self.command, self.poll_s = db, registry, command, poll_s
        self._lock_path = lock_path
        self._mutex = threading.RLock()  # the current worker: the loop and cancel both change it
        self._current: _Worker | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- life -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agentkit-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; a running job's worker is stopped and the job failed (it cannot resume)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE_S + 10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        from filelock import FileLock, Timeout

        # One runner per home: a second server on it queues jobs, and runs them once the first is gone.
        # Only the holder may settle `running` jobs, which may be another server's live workers otherwise.
        lock = FileLock(str(self._lock_path))
        while not self._stop.is_set():
            try:
                lock.acquire(timeout=0)
                break
            except Timeout:
                self._stop.wait(1.0)
        else:
            return
        try:
            self._recover()
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:  # noqa: BLE001 - the loop outlives one bad step; the next retries
                    log.exception("fine-tuning job runner step failed")
                self._wake.wait(self.poll_s)
                self._wake.clear()
            with self._mutex:
                if self._current is not None:
                    self._stop_worker(self._current)
                    self._settle(self._current, None, stopped="The server stopped while this job ran. Fix: "
                                 "create the job again.")  # fmt: skip
        finally:
            lock.release()

    def _recover(self) -> None:
        """Jobs left `running` by an earlier server: adopt a live worker, settle the others."""
        for job in self.db.jobs_in(RUNNING):
            token = _start_token(job["worker_pid"]) if job["worker_pid"] else None
            worker = _Worker(job["id"], job["output"], Path(job["folder"]), job["worker_pid"] or 0,
                             job["worker_token"], job["events_offset"], None)  # fmt: skip
            if token is not None and token == job["worker_token"] and self._current is None:
                self._current = worker
                self.db.add_event(job["id"], "The server restarted; it follows this job's worker again.")
            else:
                self._settle(worker, None, died=True)

    # ---- the loop ---------------------------------------------------------------------------------
    def _step(self) -> None:
        with self._mutex:
            if self._current is None:
                self._launch_next()
            worker = self._current
            if worker is None:
                return
            self._tail(worker)
            exited, code = worker.exit_code()
            if exited:
                self._settle(worker, code)
                self._current = None
                self._wake.set()  # the next queued job starts now, not a poll later

    def _launch_next(self) -> None:
        job = self.db.claim_next()
        if job is None:
            return
        folder = Path(job["folder"])
        argv = self.command(folder / TUNE_FILE, folder / EVENTS_FILE)
        env = {**os.environ, "AGENTKIT_HOME": str(self.registry.root), "PYTHONUNBUFFERED": "1"}
        try:
            with open(folder / LOG_FILE, "ab") as out:
                # A session of its own: the worker's pid is its process group, which cancel signals whole.
                proc = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        except OSError as exc:
            reason = f"The worker could not start: {exc}."
            self.db.finish(job["id"], FAILED, from_status=(RUNNING,), error=_error("worker_failed", reason),
                           messages=[("error", f"The job failed: {reason}")])  # fmt: skip
            return
        token = _start_token(proc.pid)
        self.db.set_worker(job["id"], proc.pid, token or "")
        self._current = _Worker(job["id"], job["output"], folder, proc.pid, token, 0, proc)

    def _tail(self, worker: _Worker) -> None:
        """Store the complete lines the worker appended since the last look."""
        path = worker.folder / EVENTS_FILE
        try:
            with open(path, "rb") as handle:
                handle.seek(worker.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for its newline
        if end == 0:
            return
        events = [e for line in chunk[:end].splitlines() if (e := _event(line)) is not None]
        worker.offset += end
        self.db.add_worker_events(worker.job_id, events, worker.offset)

    # ---- endings ----------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Stop the worker of `job_id` if it is the running job, and leave no trace of its result;
        False if `job_id` is not running here."""
        with self._mutex:
            worker = self._current
            if worker is None or worker.job_id != job_id:
                return False
            self._stop_worker(worker)
            self._tail(worker)
            # Registration is an atomic rename (Registry.create_entry): a worker stopped before it
            # leaves only a staging folder, which clean_stale removes; one stopped just after it
            # registered the whole entry, which a cancelled job must not leave either.
            if worker.output in self.registry:
                try:
                    self.registry.remove(worker.output)
                except Exception:  # noqa: BLE001 - the job is cancelled either way; say what is left
                    log.exception("cancelled job %s: could not remove %s", job_id, worker.output)
            self._clean(worker)
            self.db.finish(job_id, CANCELLED, from_status=(RUNNING,), messages=[("info", "Fine-tuning job cancelled.")])
            self._current = None
        self._wake.set()
        return True

    def _stop_worker(self, worker: _Worker) -> None:
        for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            try:
                os.killpg(worker.pid, sig)
            except (ProcessLookupError, PermissionError):
                break  # the group is gone
            deadline = time.monotonic() + wait_s
            while not worker.exit_code()[0] and time.monotonic() < deadline:
                time.sleep(0.05)
            if worker.exit_code()[0]:
                break
        self._kill_group(worker)

    @staticmethod
    def _kill_group(worker: _Worker) -> None:
        """Whatever the worker started and left (dataloader processes) goes with it."""
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _clean(self, worker: _Worker) -> None:
        from agentkit.registry.staging import clean_stale

        clean_stale(self.registry.root)  # the staging folder of a registration cut short
        shutil.rmtree(self.registry.root / "runs" / worker.output, ignore_errors=True)  # checkpoints

    def _settle(self, worker: _Worker, code: int | None, *, died: bool = False, stopped: str | None = None) -> None:
        """Final status of a worker that exited (or was stopped): succeeded if its entry is
        registered (registration is atomic, so then it is whole), else failed with the reason."""
        self._tail(worker)
        if worker.proc is not None:
            # Only our own child's group: an adopted worker's pid may by now be another process's.
            self._kill_group(worker)
        if worker.output in self.registry:
            done = [("info", f"New fine-tuned model created: {worker.output}"),
                    ("info", "The job has successfully completed.")]  # fmt: skip
            tokens = self.registry.card(worker.output).metrics.get("trained_tokens")
            self.db.finish(worker.job_id, SUCCEEDED, from_status=(RUNNING,), fine_tuned_model=worker.output,
                           messages=done, trained_tokens=tokens if isinstance(tokens, int) else None)  # fmt: skip
            return
        reason = stopped or _reason(worker.folder / LOG_FILE, code, died=died)
        self._clean(worker)
        self.db.finish(worker.job_id, FAILED, from_status=(RUNNING,), error=_error("worker_failed", reason),
                       messages=[("error", f"The job failed: {reason}")])  # fmt: skip


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None}


def _reason(log_file: Path, code: int | None, *, died: bool) -> str:
    """Why a worker ended without registering: the CLI's `error: ...` line if it printed one, else the
    last line it wrote (a traceback's), and how it exited."""
    try:
        lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except FileNotFoundError:
        lines = []
    said = next((line.removeprefix("error: ") for line in reversed(lines) if line.startswith("error: ")), None)
    if code is not None and code < 0:
        how = f"The worker was killed by {signal.Signals(-code).name}"
        how += " (out of memory?)" if code == -signal.SIGKILL else ""
    elif code is not None:
        how = f"The worker exited with code {code}"
    elif died:
        how = "The worker is gone: the server stopped while the job ran"
    else:
        how = "The worker ended"
    if said:
        return f"{how}: {said}"
    if code == 0:
        return f"{how} without registering the model (see {log_file})."
    return f"{how}." + (f" Its last words: {lines[-1][:500]}" if lines else "")


def _event(line: bytes) -> dict[str, Any] | None:
    """A worker's JSON line as an event for JobsDB.add_event; None for a line that is not one."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("type") != "metrics" or not isinstance(data.get("step"), int):
        return None
    data = {k: v for k, v in data.items() if k != "type"}
    losses = {"training loss": data.get("train_loss"), "validation loss": data.get("valid_loss")}
    said = ", ".join(f"{name}={value:.4f}" for name, value in losses.items() if isinstance(value, (int, float)))
    return {"type": "metrics", "message": f"Step {data['step']}/{data.get('total_steps', '?')}: {said or 'metrics'}",
            "data": data}

"""Goal runs for `agentkit improve`: one run of a goal in a fresh copy of its seed workspace, and
many of them, in this process or in worker processes that end with the `improve` that started them."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


# ---- one run of one goal -------------------------------------------------------------------------
def run_goal(goal_file: Path, into: Path, *, model: str, adapter: str | None, engine: str, strategy: str,
             temperature: float, seed: int, home: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run a goal in a fresh copy of its seed workspace under `into`; its runs go to `into/runs`."""
    from agentkit.agents.agent import Agent
    from agentkit.agents.spec import load_goal
    from agentkit.models.provider import ModelSpec

    spec, seed_workspace = load_goal(goal_file)
    for stale in (into / "workspace", into / "runs"):  # a run cut off before it was recorded runs again
        if stale.exists():
            shutil.rmtree(stale)
    workspace = into / "workspace"
    if seed_workspace.is_dir():
        shutil.copytree(seed_workspace, workspace, symlinks=True)
    else:
        workspace.mkdir(parents=True)
    options: dict[str, Any] = {"seed": seed} if temperature > 0 else {}
    if home is not None:
        options["home"] = str(home)  # the registry the loop tunes into, not only $AGENTKIT_HOME
    chat = ModelSpec(model=model, adapter=adapter, engine=engine, temperature=temperature, options=options)
    agent = Agent.from_spec(spec, workspace=workspace, runs_dir=into / "runs", goal_file=goal_file, model=chat,
                            **({} if strategy == "auto" and spec.strategy != "auto" else {"strategy": strategy}))  # fmt: skip
    started = time.monotonic()
    result = agent.run()
    return {"goal": spec.name, "run_id": result.run_id, "status": result.status, "ok": result.ok,
            "steps": result.steps, "tokens": result.tokens, "seconds": round(time.monotonic() - started, 2)}  # fmt: skip


def _die_with_parent(parent: int) -> None:
    """Worker initializer: a worker ends when the `improve` that started it is killed, so a resumed
    round never runs beside an orphan still writing the same attempt's folder. Linux only: elsewhere
    an orphan finishes its run and then waits, so stop the workers by hand before resuming."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # killed while this worker was still starting: no signal will come
        os._exit(1)


def run_goals(jobs: list[tuple[dict[str, Any], dict[str, Any]]], workers: int,
               record: Callable[[dict[str, Any], dict[str, Any]], None],
               run: Callable[..., dict[str, Any]] | None = None) -> None:  # fmt: skip
    """Run each job's `run_goal(**kwargs)` (or `run`'s) and `record(key, row)` it as it ends: in this process when
    `workers` is 1, else in that many worker processes, each loading the model once. Every run keeps
    its seed and folder whatever `workers` is. What a run sees from llama.cpp's prompt cache does
    depend on the runs before it in its process (measured: a sampled 135M run repeated with its seed
    in one process gave 273, then 274 tokens), so sampled runs match one-process runs as closely as
    a resumed round matches an unbroken one, not token for token."""
    run = run or run_goal  # `run`: a module-level function (it is pickled to the workers)
    if workers == 1 or len(jobs) <= 1:
        for key, kwargs in jobs:
            record(key, run(**kwargs))
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")  # no forked llama.cpp / torch state
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context,
                               initializer=_die_with_parent, initargs=(os.getpid(),))  # fmt: skip
    pending = {pool.submit(run, **kwargs): key for key, kwargs in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            errors = []
            for future in done:
                key = pending.pop(future)
                if (error := future.exception()) is None:
                    record(key, future.result())  # every run that ended well is kept, even beside a failure
                else:
                    errors.append(error)
            if errors:
                raise errors[0]
    finally:
        # on an error or Ctrl-C, return at once: queued runs are cancelled and running ones are stopped
        # (their results would not be recorded; their folders are cleared when they run again)
        if pending:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=not pending, cancel_futures=True)

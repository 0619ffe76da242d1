"""Fine-tuning job overhead (issue 15 section 5): seconds from the upload call (`client.files.create`)
to the job's `fine_tuned_model` answering a chat completion, through `agentkit serve` and the real
`openai` client, vs `agentkit tune` run directly (a subprocess) on the same tune.yaml, followed by
the same first chat completion on its result through the same server.

A small job: 32 OpenAI chat rows made here, supervised, n_epochs 1 (batch_size and learning rate
"auto": `agentkit tune`'s defaults), seed 0, on the built-in smollm2-135m-instruct. The direct run
uses the config the job gets (agentkit/server/jobs_config.tune_config; checked equal to the job's
own tune.yaml but for its output id and data path). Both train in a child process with the same
environment; the first chat on a new adapter includes its GGUF LoRA conversion on both sides.

The server's AGENTKIT_HOME is a temporary folder holding the built-in base hard-linked from the
default registry, so nothing is registered in ~/.agentkit; it is removed at the end. The job is
polled every --poll seconds, which bounds the resolution of its times.

Run: .venv/bin/python bench/finetune_jobs.py [--rows 32] [--repeats 1] [--poll 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _serve import KEY, agentkit_serve, bench_env

BASE = "smollm2-135m-instruct"
JOB_TIMEOUT_S = 900


def rows(n: int) -> list[dict[str, Any]]:
    """`n` chat rows (system, user, assistant): small sums, answered in one word."""
    out = []
    for i in range(n):
        a, b = 2 + i % 7, 3 + (i * 5) % 11
        out.append({"messages": [{"role": "system", "content": "Answer with the number only."},
                                 {"role": "user", "content": f"What is {a} plus {b}?"},
                                 {"role": "assistant", "content": f"{a + b}."}]})  # fmt: skip
    return out


def temp_home() -> Path:
    """A registry home holding only the built-in base, its files hard-linked (copied if linking fails)."""
    from agentkit.registry import Registry

    source = Registry.default().path(BASE)
    home = Path(tempfile.mkdtemp(prefix="agentkit-ftbench-"))
    entry = home / "models" / BASE
    entry.mkdir(parents=True)
    for file in source.iterdir():
        if file.is_file():
            try:
                os.link(file, entry / file.name)
            except OSError:
                shutil.copy2(file, entry / file.name)
    return home


def chat(client: Any, model: str) -> str:
    reply = client.chat.completions.create(model=model, max_tokens=8, temperature=0,
                                           messages=[{"role": "user", "content": "What is 4 plus 5?"}])  # fmt: skip
    return reply.choices[0].message.content or ""


def run_job(client: Any, data: Path, poll_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    with open(data, "rb") as handle:
        uploaded = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=BASE, training_file=uploaded.id, suffix="bench", seed=0,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    )  # fmt: skip
    created = time.perf_counter()
    running = None
    deadline = t0 + JOB_TIMEOUT_S
    while True:
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status == "running" and running is None:
            running = time.perf_counter()
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        assert time.perf_counter() < deadline, f"job {job.id} still {job.status} after {JOB_TIMEOUT_S} s"
        time.sleep(poll_s)
    done = time.perf_counter()
    assert job.status == "succeeded", (job.status, job.error)
    answer = chat(client, job.fine_tuned_model)
    usable = time.perf_counter()
    steps = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    return {"id": job.id, "model": job.fine_tuned_model, "upload+create": created - t0,
            "queued": (running or done) - created, "train": done - (running or created),
            "first chat": usable - done,
            "to trained": done - t0, "total": usable - t0, "steps": len(steps), "answer": answer}  # fmt: skip


def trainer_seconds(log: str) -> float:
    """`train_seconds` of the `registered ...` line `agentkit tune` prints: the Trainer's own time."""
    match = re.search(r"train_seconds=([0-9.]+)", log)
    return float(match.group(1)) if match else float("nan")


def run_direct(client: Any, config: dict[str, Any], home: Path, folder: Path, n: int) -> dict[str, Any]:
    import yaml

    output = f"{BASE}-direct-{n}"
    path = folder / f"direct-{n}.yaml"
    path.write_text(yaml.safe_dump({**config, "output": output}, sort_keys=False), encoding="utf-8")
    argv = [sys.executable, "-m", "agentkit", "tune", str(path), "--no-progress"]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=bench_env(AGENTKIT_HOME=str(home)), cwd=folder, capture_output=True,
                          timeout=JOB_TIMEOUT_S)  # fmt: skip
    trained = time.perf_counter()
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    answer = chat(client, output)
    usable = time.perf_counter()
    return {"model": output, "to trained": trained - t0, "first chat": usable - trained, "total": usable - t0,
            "answer": answer, "trainer": trainer_seconds(done.stdout.decode(errors="replace"))}  # fmt: skip


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A tune config without what differs between the job and the direct run: output id, data path."""
    return {**config, "output": None, "data": {**config["data"], "train": None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="job + direct pairs, order flipped each time")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between job status polls")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AGENTKIT_HOME")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything loads OpenMP (models/threads.py)

    import openai
    import yaml

    from agentkit.server.jobs_config import CreateJobRequest, tune_config

    home = temp_home()
    work = Path(tempfile.mkdtemp(prefix="agentkit-ftbench-data-"))
    data = work / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(args.rows)), encoding="utf-8")
    # The job's tune.yaml, built as the server builds it (jobs.JobService.create).
    request = CreateJobRequest.model_validate({"model": BASE, "training_file": "file-x", "seed": 0,
                                               "method": {"type": "supervised", "supervised": {
                                                   "hyperparameters": {"n_epochs": 1}}}})  # fmt: skip
    config = tune_config(method=request.resolved_method(), base=BASE, adapter=None, train=data, rows=args.rows,
                         valid=None, seed=0, output="placeholder", max_steps=None)  # fmt: skip
    jobs, directs, same_config = [], [], []
    try:
        with agentkit_serve(home=home, max_runtime_s=JOB_TIMEOUT_S * 2 * args.repeats + 300) as served:
            client = openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0, timeout=600)
            chat(client, BASE)  # the base loaded in the server before anything is timed, on both sides
            for n in range(args.repeats):
                for side in ("job", "direct") if n % 2 == 0 else ("direct", "job"):
                    if side == "job":
                        job = run_job(client, data, args.poll)
                        jobs.append(job)
                        folder = home / "server" / "jobs" / job["id"]
                        job["trainer"] = trainer_seconds((folder / "worker.log").read_text(errors="replace"))
                        written = yaml.safe_load((folder / "tune.yaml").read_text())
                        same_config.append(_comparable(written) == _comparable(config))
                        if not same_config[-1]:
                            print(f"job tune.yaml differs: {written} vs {config}")
                    else:
                        directs.append(run_direct(client, config, home, work, n))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)

    def med(items: list[dict[str, Any]], key: str) -> float:
        return statistics.median(i[key] for i in items)

    print(f"## fine-tuning job vs `agentkit tune` on {BASE}: {args.rows} chat rows, supervised LoRA, n_epochs 1, "
          f"{jobs[0]['steps']} steps, seed 0; {args.repeats} pair(s), poll every {args.poll} s"
          f"; same tune.yaml: {all(same_config)}")  # fmt: skip
    print(f"{'path (medians)':28} {'upload+create':>13} {'queued':>7} {'running':>9} {'to trained':>11} "
          f"{'(Trainer)':>10} {'first chat':>11} {'total':>7}")  # fmt: skip
    print(f"{'job (openai client)':28} {med(jobs, 'upload+create'):11.2f} s {med(jobs, 'queued'):5.2f} s "
          f"{med(jobs, 'train'):7.2f} s {med(jobs, 'to trained'):9.2f} s {med(jobs, 'trainer'):8.2f} s "
          f"{med(jobs, 'first chat'):9.2f} s {med(jobs, 'total'):5.2f} s")  # fmt: skip
    print(f"{'agentkit tune (subprocess)':28} {'':>13} {'':>7} {'':>9} {med(directs, 'to trained'):9.2f} s "
          f"{med(directs, 'trainer'):8.2f} s {med(directs, 'first chat'):9.2f} s {med(directs, 'total'):5.2f} s")  # fmt: skip
    print("totals per run, in run order: job " + ", ".join(f"{j['total']:.2f}" for j in jobs)
          + " s; direct " + ", ".join(f"{d['total']:.2f}" for d in directs) + " s")
    print(f"ratio job / direct: to trained {med(jobs, 'to trained') / med(directs, 'to trained'):.3f}x, "
          f"total (usable) {med(jobs, 'total') / med(directs, 'total'):.3f}x; overhead "
          f"{med(jobs, 'total') - med(directs, 'total'):+.2f} s")  # fmt: skip
    print(f"answers to 'What is 4 plus 5?': job {jobs[0]['answer']!r}, direct {directs[0]['answer']!r}")


if __name__ == "__main__":
    main()

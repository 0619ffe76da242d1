"""CPU threads for generation on both engines: the default, chosen by measurement, and the scope
in which torch runs with it.

Measured on the 2-core CI box while other test jobs ran (load average 1.6-5), SmolLM2-135M,
greedy, 64 new tokens:
  llama.cpp (Q4_1), decode tok/s, 3 runs each:
    1 thread                          75, 75, 77
    2 threads, OMP_WAIT_POLICY=PASSIVE 64, 65, 64
    2 threads, OpenMP default (spin)   6, 2, 16     <- waiting threads spin on the busy cores
    prompt eval, 1 vs 2 batch threads (PASSIVE): 69-71 vs 65-93 tok/s (noise > difference)
  transformers (fp32), seconds per 64-token invoke from the main thread, 2 runs each:
    load ~5:  torch default (2 threads) 27.9, 32.7 | set_num_threads(1) 8.9, 8.5
              OMP_WAIT_POLICY=PASSIVE 11.1, 8.1    | from a worker thread 8.0, 8.2
    load ~2:  LocalChatModel(n_threads=2) 20.6, 16.3 | the default here (1 thread) 5.3, 6.1
So one thread is the default on both: it is never the slow case, and PASSIVE does not always
apply -- OpenMP reads it once, when its runtime loads, and torch (imported by transformers) loads
the same libgomp.so.1 that llama.cpp uses, usually before agentkit can set it. On an idle machine
with more cores, pass `n_threads` (and export OMP_WAIT_POLICY=PASSIVE before starting Python).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_THREADS = 1
_TORCH_LOCK = threading.Lock()  # set/restore pairs from two models must not interleave


def generation_threads(requested: int | None) -> int:
    return DEFAULT_THREADS if requested is None else max(1, int(requested))


@contextmanager
def torch_threads(requested: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op pool at `requested` threads (None: the default), then
    restore it, so a chat call does not change what tuning or embeddings in the process get."""
    import torch

    want = generation_threads(requested)
    with _TORCH_LOCK:
        before = torch.get_num_threads()
        if before != want:
            torch.set_num_threads(want)
    try:
        yield
    finally:
        with _TORCH_LOCK:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

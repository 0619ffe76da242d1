"""Hot swap: switching between adapters loaded on one base vs building a PeftModel from disk for
each switch (what a script without an adapter cache does). Targets: < 10 ms per switch and >= 50x
faster, for LoRA <-> LoRA and for LoRA <-> prompt-learning (prefix tuning).

Three small adapters are trained once (2 steps each, synthetic rows) into the registry if missing:
`bench-swap-a`, `bench-swap-b` (LoRA, all linear layers) and `bench-swap-prefix` (prefix tuning).

Run: .venv/bin/python bench/hot_swap.py [--switches 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE = "smollm2-135m-instruct"
ADAPTERS = {  # registry id -> (method, its block in tune.yaml)
    "bench-swap-a": ("lora", {"r": 8}),
    "bench-swap-b": ("lora", {"r": 8}),
    "bench-swap-prefix": ("prefix_tuning", {"num_virtual_tokens": 8}),
}


def ensure_adapters() -> None:
    from agentkit.registry import Registry
    from agentkit.tuning import TuneConfig, train

    registry = Registry.default()
    data = Path(tempfile.mkdtemp()) / "rows.jsonl"
    data.write_text(
        "\n".join(json.dumps({"instruction": f"Item {i}?", "output": f"Answer {i}."}) for i in range(8))
    )
    for seed, (adapter, (method, block)) in enumerate(ADAPTERS.items()):
        if adapter not in registry:
            train(TuneConfig.model_validate({
                "base": BASE, "method": method, method: block,
                "data": {"train": str(data), "eval_fraction": 0}, "output": adapter,
                "train": {"max_steps": 2, "batch_size": 4, "max_length": 64, "seed": seed},
            }))  # fmt: skip


def median_ms(run: Callable[[int], Any], n: int) -> float:
    """Median wall time of run(i) for i in range(n), in milliseconds."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=50)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from agentkit.models.runtime import LoadedModel

    ensure_adapters()
    loaded = LoadedModel.get(BASE)
    ids = torch.tensor([[1, 504, 3400]])
    with loaded.lock:  # warm: every adapter loaded once, as a long-running app would have them
        for adapter in ADAPTERS:
            with loaded._using(adapter):
                pass

    def switch(pair: tuple[str, str], forward: bool) -> Callable[[int], None]:
        def run(i: int) -> None:
            with loaded.lock, loaded._using(pair[i % 2]) as module, torch.inference_mode():
                if forward:  # one token, so the switch is really in effect
                    module(input_ids=ids[:, :1])

        return run

    # Baseline: a fresh PeftModel from the adapter folder on an already loaded base, per switch.
    base = AutoModelForCausalLM.from_pretrained(loaded.registry.path(BASE), use_safetensors=True)
    base.eval()

    def rebuild(adapter: str, forward: bool) -> Callable[[int], None]:
        path = str(loaded.registry.path(adapter))

        def run(i: int) -> None:
            model = PeftModel.from_pretrained(base, path)
            if forward:
                with torch.inference_mode():
                    model(input_ids=ids[:, :1])
            if adapter != "bench-swap-prefix":  # LoRA layers were injected into `base`: take them out
                model.unload()

        return run

    lora, mixed = ("bench-swap-a", "bench-swap-b"), ("bench-swap-a", "bench-swap-prefix")
    n, m = args.switches, max(6, args.switches // 5)
    rows = {
        "LoRA <-> LoRA": (median_ms(switch(lora, False), n), median_ms(rebuild("bench-swap-b", False), m),
                          median_ms(switch(lora, True), n), median_ms(rebuild("bench-swap-b", True), m)),
        "LoRA <-> prefix tuning": (median_ms(switch(mixed, False), n), median_ms(rebuild("bench-swap-prefix", False), m),
                                   median_ms(switch(mixed, True), n), median_ms(rebuild("bench-swap-prefix", True), m)),
    }  # fmt: skip
    with torch.inference_mode():
        bare = median_ms(lambda i: base(input_ids=ids[:, :1]), n)

    print(
        f"one-token forward, bare base: {bare:.1f} ms (medians; {n} switches, {m} PeftModel builds per row)"
    )
    print(f"{'switch':24} {'cached':>9} {'from disk':>10} {'ratio':>7}   {'+fwd cached':>11} {'+fwd disk':>10} {'ratio':>6}")  # fmt: skip
    met = True
    for name, (cached, disk, cached_fwd, disk_fwd) in rows.items():
        print(f"{name:24} {cached * 1000:6.1f} us {disk:7.1f} ms {disk / cached:6.0f}x   "
              f"{cached_fwd:8.1f} ms {disk_fwd:7.1f} ms {disk_fwd / cached_fwd:5.1f}x")  # fmt: skip
        met = met and cached < 10 and disk / cached >= 50
    verdict = "met" if met else "MISSED"
    print(f"target (switch < 10 ms and >= 50x faster than a PeftModel from disk): {verdict}")


if __name__ == "__main__":
    main()

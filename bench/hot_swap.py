"""Hot swap: switching between two loaded LoRA adapters on one base vs building a PeftModel
from disk for each switch (what a script without an adapter cache does). Targets: < 10 ms per
switch and >= 50x faster.

Two small LoRA adapters are trained once (2 steps each, synthetic rows) into the registry if
missing: `bench-swap-a`, `bench-swap-b`.

Run: .venv/bin/python bench/hot_swap.py [--switches 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def ensure_adapters() -> list[str]:
    from agentkit.registry import Registry
    from agentkit.tuning import TuneConfig, train

    registry, ids = Registry.default(), ["bench-swap-a", "bench-swap-b"]
    data = Path(tempfile.mkdtemp()) / "rows.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"Item {i}?", "output": f"Answer {i}."}) for i in range(8)))
    for seed, adapter in enumerate(ids):
        if adapter not in registry:
            train(TuneConfig.model_validate({
                "base": "smollm2-135m-instruct", "method": "lora", "lora": {"r": 8},
                "data": {"train": str(data), "eval_fraction": 0}, "output": adapter,
                "train": {"max_steps": 2, "batch_size": 4, "max_length": 64, "seed": seed},
            }))  # fmt: skip
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=50)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from agentkit.models.runtime import LoadedModel

    a, b = ensure_adapters()
    loaded = LoadedModel.get("smollm2-135m-instruct")
    ids = torch.tensor([[1, 504, 3400]])
    with loaded.lock:  # warm: both adapters loaded once, as a long-running app would have them
        for adapter in (a, b):
            with loaded._using(adapter):
                pass

    # The switch alone (PEFT set_adapter between two loaded adapters), then switch + forward.
    switch_only = []
    for i in range(args.switches):
        adapter = a if i % 2 else b
        start = time.perf_counter()
        with loaded.lock, loaded._using(adapter):
            pass
        switch_only.append(time.perf_counter() - start)
    swaps = []
    for i in range(args.switches):
        adapter = a if i % 2 else b
        start = time.perf_counter()
        with loaded.lock, loaded._using(adapter) as module, torch.inference_mode():
            module(input_ids=ids[:, :1])  # one token forward, so the switch is really in effect
        swaps.append(time.perf_counter() - start)

    # Baseline: a fresh PeftModel from the adapter folder on the already loaded base, per switch.
    base = AutoModelForCausalLM.from_pretrained(loaded.registry.path("smollm2-135m-instruct"), use_safetensors=True)
    rebuilds = []
    for i in range(max(4, args.switches // 5)):
        path = str(loaded.registry.path(a if i % 2 else b))
        start = time.perf_counter()
        model = PeftModel.from_pretrained(base, path)
        with torch.inference_mode():
            model(input_ids=ids[:, :1])
        rebuilds.append(time.perf_counter() - start)
        base = model.unload()  # take the LoRA layers out again for the next round

    # The same one-token forward on the bare base, to separate the switch from the forward.
    forwards = []
    for _ in range(args.switches):
        start = time.perf_counter()
        with torch.inference_mode():
            base(input_ids=ids[:, :1])
        forwards.append(time.perf_counter() - start)
    w, s, r, f = (statistics.median(x) * 1000 for x in (switch_only, swaps, rebuilds, forwards))
    print(f"switch alone (cached)        {w:7.2f} ms")
    print(f"one-token forward, bare base {f:7.2f} ms")
    print(f"switch + forward (cached)    {s:7.2f} ms")
    print(f"PeftModel from disk + fwd    {r:7.2f} ms")
    print(f"speed-up, switch+forward vs rebuild+forward: {r / s:.1f}x; switch alone vs rebuild+forward: {r / w:.0f}x")


if __name__ == "__main__":
    main()

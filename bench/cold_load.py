"""Cold load of the built-in chat model: cached safetensors (the registry) vs the packaged GGUF.

Each load runs in a fresh subprocess (imports done before the clock starts), alternating, and
the script prints the median of each and the speed-up. Target: >= 5x.

Run: .venv/bin/python bench/cold_load.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

SAFETENSORS = """
import time, torch, transformers
from agentkit.registry import Registry
from agentkit.models.runtime import LoadedModel
registry = Registry.default()
registry.ensure("smollm2-135m-instruct")
t0 = time.perf_counter()
LoadedModel._load(registry, "smollm2-135m-instruct")  # sha256 check + from_pretrained
print(time.perf_counter() - t0)
"""

GGUF = """
import time, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
from agentkit.registry import builtin_specs
from agentkit.registry.builtins import SMOLLM2_GGUF
folder = builtin_specs()["smollm2-135m-instruct"].package_dir()
t0 = time.perf_counter()
AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
print(time.perf_counter() - t0)
"""


def timed(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"safetensors (registry)": [], "gguf (package)": []}
    for _ in range(args.repeats):
        times["safetensors (registry)"].append(timed(SAFETENSORS))
        times["gguf (package)"].append(timed(GGUF))
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, value in med.items():
        print(f"{name:24s} {value:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"speed-up of the registry load: {med['gguf (package)'] / med['safetensors (registry)']:.1f}x")
    print(json.dumps({"median_s": med}))


if __name__ == "__main__":
    main()

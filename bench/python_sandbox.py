"""Start-up cost of the python tool's bubblewrap sandbox: `print(1)` through `run_python` vs a plain
`python -I -c` subprocess of the same interpreter, alternating, and the ratio of the medians.

Run: .venv/bin/python bench/python_sandbox.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentkit.tools.python_code import PythonOptions, run_python, sandbox_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if problem := sandbox_problem():  # also the one-time probe, kept out of the timings
        sys.exit(f"{problem[0]} Fix: {problem[1]}")
    options = PythonOptions()
    plain: list[float] = []
    sandboxed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="agentkit-bench-") as folder:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-c", "print(1)"], cwd=folder, capture_output=True,
                           check=True)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_python("print(1)", Path(folder), options)
            sandboxed.append(time.perf_counter() - t0)
    base, box = statistics.median(plain), statistics.median(sandboxed)
    print(f"plain python -I -c: {base * 1000:.1f} ms (median of {args.repeats})")
    print(f"bwrap sandbox:      {box * 1000:.1f} ms (median of {args.repeats})")
    print(f"ratio: {box / base:.2f}x  (+{(box - base) * 1000:.1f} ms per call)")


if __name__ == "__main__":
    main()

"""Build the agent LoRA's training file: glaive tool-call conversations plus exported agentkit traces,
as one openai-format JSONL (`messages` with `tool_calls` / `tool` turns, and `tools`).

Run (from the project root; ../shared/data sits beside the checkout):
  .venv/bin/python examples/agent_lora/build_data.py \
      --glaive ../shared/data/toolcall_glaive_demo/glaive_toolcall_en_demo.json \
      --traces examples/agent_lora/data/traces.jsonl
Writes examples/agent_lora/data/agent_sft.jsonl, which tune.yaml reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_GLAIVE = HERE.parents[2] / "shared" / "data" / "toolcall_glaive_demo" / "glaive_toolcall_en_demo.json"
DEFAULT_OUT = HERE / "data" / "agent_sft.jsonl"
_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def glaive_row(record: dict[str, Any], where: str) -> dict[str, Any]:
    """One glaive (LLaMA-Factory sharegpt) record -> an openai-format row with the same turns.

    function_call turns become assistant `tool_calls` (arguments as a JSON string, as the OpenAI API
    writes them); observation turns become `tool` messages answering the call before them.
    """
    tools = record.get("tools") or "[]"
    tools = json.loads(tools) if isinstance(tools, str) else tools
    messages: list[dict[str, Any]] = []
    last_id = None
    for i, turn in enumerate(record["conversations"]):
        who, value = turn["from"], turn["value"]
        if who == "function_call":
            call = json.loads(value) if isinstance(value, str) else value
            last_id = f"call_{i}"
            entry = {"id": last_id, "type": "function",
                     "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))}}
            prev = messages[-1] if messages else None
            if prev and prev["role"] == "assistant" and not prev.get("tool_calls"):
                prev["tool_calls"] = [entry]  # "gpt: text" + "function_call" is one reply
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [entry]})
        elif who == "observation":
            if last_id is None:
                raise ValueError(f"{where}: turn {i} is an observation with no function_call before it")
            messages.append({"role": "tool", "tool_call_id": last_id, "content": value})
        elif who in _ROLES:
            messages.append({"role": _ROLES[who], "content": value})
        else:
            raise ValueError(f"{where}: turn {i} has unknown speaker {who!r}")
    return {"messages": messages, "tools": [{"type": "function", "function": t} for t in tools]}


def has_call(row: dict[str, Any]) -> bool:
    return any(m.get("tool_calls") for m in row["messages"])


def build(glaive: list[dict], traces: list[dict], glaive_rows: int, trace_repeats: int) -> list[dict]:
    """Glaive rows with a tool call first (file order), then the traces repeated: they are few, and
    they are the exact prompt the agent shows the model."""
    converted = [glaive_row(r, f"glaive record {i}") for i, r in enumerate(glaive)]
    chosen = ([r for r in converted if has_call(r)] + [r for r in converted if not has_call(r)])[:glaive_rows]
    return chosen + traces * trace_repeats


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glaive", type=Path, default=DEFAULT_GLAIVE)
    parser.add_argument("--traces", type=Path, default=None, help="`agentkit runs export --format sft` output")
    parser.add_argument("--glaive-rows", type=int, default=8, help="glaive conversations kept")
    parser.add_argument("--trace-repeats", type=int, default=2, help="copies of each trace")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.glaive.is_file():
        print(f"{args.glaive}: not found; pass --glaive ../shared/data/toolcall_glaive_demo/glaive_toolcall_en_demo.json",
              file=sys.stderr)
        return 2
    glaive = json.loads(args.glaive.read_text(encoding="utf-8"))
    traces = []
    if args.traces is not None:
        traces = [json.loads(x) for x in args.traces.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = build(glaive, traces, args.glaive_rows, args.trace_repeats)
    write_jsonl(args.out, rows)
    print(f"{args.out}: {len(rows)} rows ({min(args.glaive_rows, len(glaive))} glaive, "
          f"{len(traces)} traces x {args.trace_repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

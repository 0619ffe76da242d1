"""Tool-call accuracy on BFCL v4 live_simple: the right function with arguments inside the accepted answers.

Each question's function is bound to `LocalChatModel` with tool_choice="any", so the grammar
forces one well-formed call; what is scored is whether its name and arguments match BFCL's
accepted answers, by BFCL's AST rules: every required argument present, no unknown argument, each
value in its accepted list (strings compared case-, space- and punctuation-insensitively, an int
accepted for a float), and an optional argument left out only where "" is among its answers.
The base model and, with `--adapter ID`, the same base plus that adapter answer the same questions
in the same run; the difference is printed in points.

Run: .venv/bin/python bench/bfcl_eval.py [--data ../shared/data/bfcl] [--limit 60] [--adapter smollm2-agent-lora]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bfcl"
QUESTIONS = "BFCL_v4_live_simple.json"
ANSWERS = "BFCL_v4_live_simple.answers.json"
# BFCL's Python-flavoured type names -> JSON Schema
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "integer": "integer", "string": "string",
          "boolean": "boolean", "array": "array", "number": "number", "object": "object"}


def json_schema(node: Any) -> Any:
    """BFCL parameter schemas ("dict", "float", "any") as JSON Schema the grammar compiler takes."""
    if isinstance(node, list):
        return [json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items()}
    kind = node.get("type")
    if isinstance(kind, str):
        if kind in _TYPES:
            out["type"] = _TYPES[kind]
        else:
            out.pop("type")  # "any": no constraint
    return out


def load(data: Path) -> list[tuple[dict, dict]]:
    questions = [json.loads(x) for x in (data / QUESTIONS).read_text(encoding="utf-8").splitlines() if x.strip()]
    answers = {a["id"]: a for a in map(json.loads, (data / ANSWERS).read_text(encoding="utf-8").splitlines()) if a}
    return [(q, answers[q["id"]]) for q in questions if q["id"] in answers]


# ---------------------------------------------------------------- BFCL's AST check (simple category)


def _standard(text: str) -> str:
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _same(value: Any, accepted: Any, kind: str | None) -> bool:
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, str) and isinstance(accepted, str):
        return _standard(value) == _standard(accepted)
    if isinstance(value, list) and isinstance(accepted, list):
        return len(value) == len(accepted) and all(_same(v, a, None) for v, a in zip(value, accepted))
    if isinstance(value, dict) and isinstance(accepted, dict):
        return all(_value_ok(value.get(k, ""), opts if isinstance(opts, list) else [opts], None)
                   for k, opts in accepted.items()) and set(value) <= set(accepted)
    if isinstance(value, bool) != isinstance(accepted, bool):
        return False
    return value == accepted


def _value_ok(value: Any, accepted: list, kind: str | None) -> bool:
    return any(_same(value, a, kind) for a in accepted if a != "" or value == "")


def check(call: dict[str, Any] | None, function: dict, truth: dict) -> str | None:
    """None when `call` is accepted, else the reason (as BFCL's checker names it)."""
    (name, answer), = truth["ground_truth"][0].items()
    if call is None:
        return "no call"
    if call["name"] != name:
        return f"wrong function {call['name']!r}"
    params = function["parameters"].get("properties", {})
    for required in function["parameters"].get("required", []):
        if required not in call["args"]:
            return f"missing required {required!r}"
    for arg, value in call["args"].items():
        if arg not in params:
            return f"unexpected argument {arg!r}"
        if arg not in answer:
            return f"argument {arg!r} has no accepted value"
        if not _value_ok(value, answer[arg], params[arg].get("type")):
            return f"{arg}={value!r} not in {answer[arg]!r}"
    for arg, accepted in answer.items():
        if arg not in call["args"] and "" not in accepted:
            return f"optional {arg!r} left out"
    return None


# ---------------------------------------------------------------- the run


def ask(llm: Any, question: dict, adapter: str | None) -> tuple[dict | None, int]:
    from langchain_core.messages import HumanMessage, SystemMessage

    from agentkit.errors import BadInputError

    fn = question["function"][0]
    tool = {"name": fn["name"], "description": fn.get("description", ""), "parameters": json_schema(fn["parameters"])}
    messages = [SystemMessage(m["content"]) if m["role"] == "system" else HumanMessage(m["content"])
                for m in question["question"][0]]
    try:
        reply = llm.bind_tools([tool], tool_choice="any").invoke(messages, adapter=adapter)
    except BadInputError as exc:  # a schema the grammar compiler refuses counts as a miss
        print(f"  {question['id']}: {exc.one_line()}", file=sys.stderr)
        return None, 0
    usage = reply.usage_metadata or {}
    return (reply.tool_calls[0] if reply.tool_calls else None), usage.get("output_tokens", 0)


def evaluate(llm: Any, items: list[tuple[dict, dict]], adapter: str | None, verbose: bool) -> dict[str, Any]:
    started, right, tokens, reasons = time.perf_counter(), 0, 0, {}
    for question, truth in items:
        t0 = time.perf_counter()
        call, used = ask(llm, question, adapter)
        tokens += used
        reason = check(call, question["function"][0], truth)
        right += reason is None
        if reason is not None:
            kind = "wrong value" if " not in " in reason else " ".join(reason.split()[:2])
            reasons[kind] = reasons.get(kind, 0) + 1
        if verbose:
            print(f"  {question['id']} ({time.perf_counter() - t0:.1f} s, {used} tokens): "
                  f"{'ok' if reason is None else reason} <- {call and call['args']}", flush=True)
    return {"accuracy": right / len(items), "right": right, "n": len(items), "reasons": reasons,
            "seconds": time.perf_counter() - started, "output_tokens": tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the BFCL files")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions (bounds minutes)")
    parser.add_argument("--adapter", default=None, help="registry id of an adapter of --model to compare")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "llamacpp"])
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per question")
    args = parser.parse_args(argv)

    if not (args.data / QUESTIONS).is_file() or not (args.data / ANSWERS).is_file():
        print(f"skip: {args.data} lacks {QUESTIONS} / {ANSWERS} (pass --data ../shared/data/bfcl)")
        return 0
    from agentkit.models import LocalChatModel
    from agentkit.registry import Registry

    Registry.default().ensure(args.model)
    items = load(args.data)[: args.limit]
    llm = LocalChatModel(model=args.model, engine=args.engine, max_new_tokens=args.max_new_tokens)
    results = {}
    for label, adapter in [("base", None)] + ([("adapter", args.adapter)] if args.adapter else []):
        print(f"{label} ({args.model}{' + ' + adapter if adapter else ''}, engine {args.engine}), "
              f"{len(items)} questions ...", flush=True)
        results[label] = evaluate(llm, items, adapter, args.verbose)
        r = results[label]
        print(f"{label:8s} accuracy {r['accuracy']:.3f} ({r['right']}/{r['n']})  {r['seconds'] / 60:.1f} min  "
              f"misses {r['reasons']}", flush=True)
    if args.adapter:
        base, tuned = results["base"]["accuracy"], results["adapter"]["accuracy"]
        ratio = f"{tuned / base:.2f}x" if base else "n/a (base 0)"
        print(f"adapter - base: {100 * (tuned - base):+.1f} points ({ratio} the base accuracy)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

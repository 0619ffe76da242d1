"""The two chat engines, measured in one run on the built-in SmolLM2-135M (CPU), greedy:

1. decode tokens/s of the raw binding (xllamacpp's Server, the same GGUF, prompt ids and settings)
   vs LocalChatModel(engine="llamacpp") -- target ratio >= 0.9;
2. LocalChatModel(engine="llamacpp") vs LocalChatModel(engine="transformers") -- target >= 4x;
3. per-token decode cost of a constrained tool call (the engine's own grammar) vs free decoding
   on llama.cpp -- target overhead <= 15%.

Why xllamacpp and not llama-cpp-python: 0.3.36 is an sdist only (a 5-6 min compile, and
-DGGML_NATIVE ties the build to the CPU it ran on); xllamacpp is a prebuilt AVX2 wheel that runs
llama-server in the process: GGUF loading, GGUF LoRA, grammars (llguidance) and per-request
sampling, seeds and cancellation, with no port to expose.

Run on an idle machine: OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/engines.py [--tokens 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
TOOL_PROMPT = "Write a long story about a lighthouse keeper, then save it with save_story."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any OpenMP runtime loads

    from langchain_core.tools import tool

    from agentkit.models import LocalChatModel

    @tool
    def save_story(story: str) -> str:
        """Save a story."""
        return "saved"

    engines = {name: LocalChatModel(model=args.model, engine=name, max_new_tokens=args.tokens) for name in ("llamacpp", "transformers")}
    llama = engines["llamacpp"].load_runtime()
    prompt_ids = llama.encode_chat([{"role": "user", "content": PROMPT}])
    body = {"prompt": prompt_ids, "max_tokens": args.tokens, "temperature": 0, "top_k": 0, "min_p": 0.0,
            "cache_prompt": True}  # fmt: skip

    def raw() -> tuple[int, float]:
        started = time.perf_counter()
        reply = llama.server.handle_completions(body)
        return reply["usage"]["completion_tokens"], time.perf_counter() - started

    def chat(name: str) -> tuple[int, float]:
        started = time.perf_counter()
        reply = engines[name].invoke(PROMPT)
        return reply.usage_metadata["output_tokens"], time.perf_counter() - started

    runs = {"raw xllamacpp": raw, "LocalChatModel llamacpp": lambda: chat("llamacpp"),
            "LocalChatModel transformers": lambda: chat("transformers")}  # fmt: skip
    rates: dict[str, float] = {}
    for label, run in runs.items():
        run()  # warm-up: loading, lazy imports, the prompt into the KV cache
        samples = [run() for _ in range(args.repeats)]
        rates[label] = statistics.median(n / s for n, s in samples)
        print(f"{label:30s} {rates[label]:7.1f} tok/s  ({samples[0][0]} tokens, median of {args.repeats})")
    print(f"llamacpp / raw binding        {rates['LocalChatModel llamacpp'] / rates['raw xllamacpp']:7.2f}x  (target >= 0.9)")
    print(f"llamacpp / transformers       {rates['LocalChatModel llamacpp'] / rates['LocalChatModel transformers']:7.2f}x  (target >= 4)")

    # Constrained vs free decoding, per token, from the server's own decode timings.
    from agentkit.models.tool_calls import openai_tool

    grammar = llama.grammar.tool_calls([openai_tool(save_story, 0)], "save_story").text
    tool_ids = llama.encode_chat([{"role": "user", "content": TOOL_PROMPT}])

    def per_token_ms(extra: dict) -> float:
        reply = llama.server.handle_completions({**body, "prompt": tool_ids, **extra})
        timings = reply["timings"]
        return timings["predicted_ms"] / max(1, timings["predicted_n"])

    free = statistics.median(per_token_ms({}) for _ in range(args.repeats))
    constrained = statistics.median(per_token_ms({"grammar": grammar}) for _ in range(args.repeats))
    print(f"free decoding                 {free:7.2f} ms/token")
    print(f"constrained tool call         {constrained:7.2f} ms/token")
    print(f"constrained overhead          {100 * (constrained / free - 1):+6.1f}%  (target <= 15%)")


if __name__ == "__main__":
    main()

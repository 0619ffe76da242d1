"""Chat-model overhead, measured in one run on the built-in SmolLM2-135M (CPU):

1. tokens/s of LocalChatModel.invoke / .stream vs raw `model.generate` on the same prompts and
   settings (greedy, same max_new_tokens, same chat template) -- target ratio >= 0.95;
2. per-token decode cost of a constrained tool call vs unconstrained decoding of the same prompt
   -- target overhead <= 25%.

Run: .venv/bin/python bench/chat_overhead.py [--repeats 3] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

PROMPTS = [
    "Explain in a few sentences why the sky is blue.",
    "Write a short story about a robot who learns to paint.",
    "List some tips for staying focused while studying.",
    "Describe how a bicycle works.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    import torch
    from langchain_core.messages import HumanMessage

    from agentkit.models import LocalChatModel
    from agentkit.models.messages import to_chat_dicts
    from agentkit.models.runtime import GenerationParams, LoadedModel
    from agentkit.tools.calculator import calculator

    llm = LocalChatModel(max_new_tokens=args.tokens, temperature=0, engine="transformers")  # vs raw transformers
    loaded = LoadedModel.get(llm.model)
    model, tok = loaded.model, loaded.tokenizer

    def raw(prompt: str) -> int:
        enc = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=args.tokens, do_sample=False, pad_token_id=tok.eos_token_id)
        return out.shape[1] - enc["input_ids"].shape[1]

    def ours(prompt: str) -> int:
        return llm.invoke(prompt).usage_metadata["output_tokens"]

    def ours_stream(prompt: str) -> int:
        last = None
        for chunk in llm.stream(prompt):
            last = chunk
        return last.usage_metadata["output_tokens"]

    runners = {"raw generate": raw, "LocalChatModel.invoke": ours, "LocalChatModel.stream": ours_stream}
    for run in runners.values():  # warm-up: first-call allocations and lazy imports
        run(PROMPTS[0])
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for prompt in PROMPTS:
            for name, run in runners.items():  # interleaved, so drift hits every runner alike
                start = time.perf_counter()
                n = run(prompt)
                rates[name].append(n / (time.perf_counter() - start))
    base = statistics.median(rates["raw generate"])
    print(f"## tokens/s, greedy, max_new_tokens={args.tokens}, {len(PROMPTS)} prompts x {args.repeats}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:24s} {med:7.2f} tok/s   ratio vs raw: {med / base:.3f}")

    # ---- constrained vs unconstrained, per decoded token (prefill measured and removed) ----
    tools = [llm.bind_tools([calculator]).kwargs["tools"][0]]
    prompt = loaded.encode_chat(to_chat_dicts([HumanMessage("What is 1234 * 5678 + 91011?")], tools=tools))
    grammar = loaded.grammar.tool_calls(tools, "calculator")
    free = GenerationParams(max_new_tokens=48)

    def per_token(grammar_or_none) -> float:
        # Prefill does not depend on the grammar (the first mask is counted with the tokens).
        one = GenerationParams(max_new_tokens=1)
        t0 = time.perf_counter()
        loaded.generate(prompt, one)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = loaded.generate(prompt, free, grammar=grammar_or_none)
        total = time.perf_counter() - t0
        return (total - prefill) / max(1, out.output_tokens - 1)

    per_token(grammar), per_token(None)  # warm-up (grammar compile is cached after this)
    cons, unc = [], []
    for _ in range(args.repeats * 2):
        cons.append(per_token(grammar))
        unc.append(per_token(None))
    c, u = statistics.median(cons), statistics.median(unc)
    print("## decode cost per token, tool-call grammar vs none (same prompt)")
    print(f"unconstrained {u * 1000:6.1f} ms/token | constrained {c * 1000:6.1f} ms/token | overhead {c / u - 1:+.1%}")


if __name__ == "__main__":
    main()

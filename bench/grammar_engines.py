"""Constrained-decoding engines compared on the built-in SmolLM2-135M tokenizer (CPU, one run).

Engines: xgrammar (what agentkit uses), llguidance and outlines-core, all given the same tool-call
JSON schema. For each engine the script measures:

1. grammar compile time (ms, median of 5; per-tokenizer setup is reported separately);
2. mask cost: walking the token ids of a fixed valid target JSON, compute the allowed-token
   bitmask, then advance the matcher with the token -- mean microseconds per token;
3. end to end: greedy `model.generate` of up to N new tokens for a short chat prompt with each
   engine's logits processor vs none -- decode ms/token (median step, prefill excluded), median of
   the repeats, configurations interleaved so drift hits them all alike. CPU contention from other
   processes skews this column; the load average is printed so a noisy run can be spotted.

All engines write the same int32 bitmask, applied to the logits by xgrammar's CPU kernel, so the
end-to-end numbers differ only by the engine's own work. An engine that is missing or fails
prints 'skipped: <reason>' and the rest carry on.

Run: .venv/bin/python bench/grammar_engines.py [--repeats 3] [--tokens 48]
(optional engines: .venv/bin/pip install llguidance==1.9.1 outlines-core==0.2.14)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import transformers
import xgrammar as xgr

SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["location", "unit", "days"],
}
SCHEMA_TEXT = json.dumps(SCHEMA)
# ", " and ": " separators: the layout xgrammar emits with any_whitespace=False (agentkit's setting).
TARGET = json.dumps({"location": "Paris, France", "unit": "celsius", "days": 3})
PROMPT = "What will the weather be in Paris over the next 3 days? Answer with a JSON tool call."
VOCAB = 49152  # model's logits width == tokenizer size for SmolLM2


def new_bitmask() -> torch.Tensor:
    return torch.full((1, (VOCAB + 31) // 32), -1, dtype=torch.int32)  # 1 bit per token id


def gpt2_byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte->unicode map: byte-level BPE token text -> raw bytes."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


# Each engine: setup(tokenizer) -> (compile() -> grammar, matcher(grammar) -> (fill, advance)).
# fill(bitmask) writes the allowed-token mask; advance(token_id) moves the matcher on.
def xgrammar_engine(tok):
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=VOCAB, stop_token_ids=[tok.eos_token_id])

    def compile_():  # cache off: we time the compile, not a dict lookup
        compiler = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)
        return compiler.compile_json_schema(SCHEMA_TEXT, any_whitespace=False)

    def matcher(grammar):
        m = xgr.GrammarMatcher(grammar)
        return m.fill_next_token_bitmask, m.accept_token

    return compile_, matcher


def llguidance_engine(tok):
    import llguidance
    import llguidance.hf
    import llguidance.torch

    lltok = llguidance.hf.from_tokenizer(tok, n_vocab=VOCAB)
    opts = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

    def compile_():  # LLMatcher builds the lexer/parser, so it is part of "compile"
        grammar = llguidance.LLMatcher.grammar_from_json_schema(SCHEMA_TEXT, defaults=opts)
        m = llguidance.LLMatcher(lltok, grammar)
        if m.is_error():
            raise RuntimeError(m.get_error())
        return grammar

    def matcher(grammar):
        m = llguidance.LLMatcher(lltok, grammar)
        return (lambda bm: llguidance.torch.fill_next_token_bitmask(m, bm)), m.consume_token

    return compile_, matcher


def outlines_engine(tok):
    import outlines_core

    # outlines-core needs the vocabulary as raw bytes -> ids, without the special tokens.
    dec, special, vmap = gpt2_byte_decoder(), set(tok.all_special_ids), {}
    for text, i in tok.get_vocab().items():
        if i not in special:
            vmap.setdefault(bytes(dec[c] for c in text), []).append(i)
    vocab = outlines_core.Vocabulary(tok.eos_token_id, vmap)

    def compile_():  # regex from schema, then the token-level DFA index (the costly part)
        # " ?": one optional space wherever JSON allows whitespace (a regex cannot tell ", " from ": ").
        rx = outlines_core.json_schema.build_regex_from_schema(SCHEMA_TEXT, whitespace_pattern=" ?")
        return outlines_core.Index(rx, vocab)

    def matcher(index):
        g = outlines_core.Guide(index)
        return (lambda bm: g.write_mask_into(bm.data_ptr(), bm.numel(), 4)), (
            lambda t: g.advance(t, return_tokens=False)
        )

    return compile_, matcher


ENGINES = {"xgrammar": xgrammar_engine, "llguidance": llguidance_engine, "outlines-core": outlines_engine}


class BitmaskProcessor(transformers.LogitsProcessor):
    """Same steps as xgrammar.contrib.hf.LogitsProcessor, for any (fill, advance) matcher."""

    def __init__(self, fill, advance) -> None:
        self.fill, self.advance, self.started, self.bitmask = fill, advance, False, new_bitmask()

    def __call__(self, input_ids, scores):
        if self.started:  # the previous call's choice is now the last input id
            self.advance(int(input_ids[0, -1]))
        self.started = True
        self.fill(self.bitmask)
        xgr.apply_token_bitmask_inplace(scores, self.bitmask)
        return scores


class StepClock(transformers.StoppingCriteria):
    """Timestamps each generated token; never stops generation itself."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        self.stamps.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def mask_walk_us(matcher, grammar, ids: list[int], reps: int = 30) -> float:
    """Mean µs per token of fill-mask + advance along `ids`; checks each id is allowed first."""
    fill, advance = matcher(grammar)
    bm = new_bitmask()
    for t in ids:  # correctness pass, untimed: the target must be accepted token by token
        fill(bm)
        if not (int(bm[0, t // 32]) >> (t % 32)) & 1:
            raise RuntimeError(f"rejects target token {t}")
        advance(t)
    times = []
    for _ in range(reps):
        fill, advance = matcher(grammar)  # fresh matcher, creation untimed
        t0 = time.perf_counter()
        for t in ids:
            fill(bm)
            advance(t)
        times.append((time.perf_counter() - t0) / len(ids) * 1e6)
    return statistics.mean(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(2)

    from agentkit.registry import Registry

    path = Registry.default().path("smollm2-135m-instruct")  # converts from the GGUF once (~20 s)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).eval()
    ids = tok.encode(TARGET, add_special_tokens=False)
    print(f"target: {TARGET} ({len(ids)} tokens)")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (> CPUs: e2e column is noisy)")

    results: dict[str, dict] = {}  # name -> {setup_ms, compile_ms, mask_us, grammar, matcher}
    for name, build in ENGINES.items():
        try:
            t0 = time.perf_counter()
            compile_, matcher = build(tok)
            setup_ms = (time.perf_counter() - t0) * 1e3
            compiles = []
            for _ in range(5):
                t0 = time.perf_counter()
                grammar = compile_()
                compiles.append((time.perf_counter() - t0) * 1e3)
            mask_us = mask_walk_us(matcher, grammar, ids)
        except Exception as exc:  # ImportError included: a missing engine is reported, not fatal
            print(f"{name}: skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            continue
        results[name] = dict(setup_ms=setup_ms, compile_ms=statistics.median(compiles),
                             mask_us=mask_us, grammar=grammar, matcher=matcher)

    # End to end: interleave "none" and every engine in each repeat; median decode ms/token.
    msgs = [{"role": "user", "content": PROMPT}]
    prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)

    def generate(name: str, n: int) -> tuple[float, str]:
        procs = []
        if name == "xgrammar":  # agentkit's own integration
            procs = [xgr.contrib.hf.LogitsProcessor(results[name]["grammar"])]
        elif name != "none":
            procs = [BitmaskProcessor(*results[name]["matcher"](results[name]["grammar"]))]
        clock = StepClock()
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=n, do_sample=False, logits_processor=procs,
                                 stopping_criteria=[clock], pad_token_id=tok.eos_token_id)
        s = clock.stamps  # s[0] follows the prefill; later gaps are pure decode steps
        # Median step, not mean: robust to scheduler hiccups, and constrained runs stop early (EOS).
        ms = statistics.median(b - a for a, b in zip(s, s[1:])) * 1e3
        return ms, tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)

    configs = ["none", *results]
    for name in configs:
        generate(name, 4)  # warm-up: first-call allocations and lazy init stay out of the timing
    runs: dict[str, list[float]] = {name: [] for name in configs}
    texts: dict[str, str] = {}
    for _ in range(args.repeats):
        for name in configs:
            ms, texts[name] = generate(name, args.tokens)
            runs[name].append(ms)
    e2e = {name: statistics.median(v) for name, v in runs.items()}

    print(f"\n{'engine':<14}{'setup ms':>10}{'compile ms':>12}{'mask µs/tok':>13}"
          f"{'gen ms/tok':>12}{'overhead':>10}  output")
    print(f"{'none':<14}{'-':>10}{'-':>12}{'-':>13}{e2e['none']:>12.2f}{'1.00x':>10}  {texts['none'][:40]!r}")
    for name, r in results.items():
        print(f"{name:<14}{r['setup_ms']:>10.1f}{r['compile_ms']:>12.2f}{r['mask_us']:>13.1f}"
              f"{e2e[name]:>12.2f}{e2e[name] / e2e['none']:>9.2f}x  {texts[name][:40]!r}")

    if results:
        base = "xgrammar" if "xgrammar" in results else next(iter(results))
        ratios = (f"{n}: {r['mask_us'] / results[base]['mask_us']:.2f}x" for n, r in results.items())
        print(f"\nmask cost vs {base}:", ", ".join(ratios))
        print("gen overhead vs unconstrained:",
              ", ".join(f"{n}: {e2e[n] / e2e['none']:.2f}x" for n in results))
        best = min(results, key=lambda n: results[n]["mask_us"])
        print(f"verdict: {best} is cheapest per token ({results[best]['mask_us']:.1f} µs mask+advance; "
              f"end to end {e2e[best] / e2e['none']:.2f}x unconstrained).")


if __name__ == "__main__":
    main()

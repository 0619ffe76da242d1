"""Load (issue 15 section 5): N concurrent streaming clients (default 16) for S seconds (default 60)
against one `agentkit serve` process on loopback that serves one base with two LoRA adapters
(`bench-gguf-lora-a`, `-b` of the built-in SmolLM2, made by bench/lora_swap.py if missing), the
adapter chosen per request. Each client alternates the adapter per request and cycles prompts.

Reported: p50 / p95 time to first token, aggregate tokens/s (and its ratio to one client alone),
errors (target 0; 429s counted apart -- the server runs with --max-concurrent equal to the client
count so that every client is admitted) and adapter mix-ups (target 0).

Mix-ups: before the load, the reference reply of every (adapter, prompt) is taken one request at a
time (greedy, temperature 0, seed 0); only prompts whose two references differ are used. Then a
burst of N requests at once checks whether greedy replies under concurrency are exactly the
references. If they are (mode "exact"), a streamed reply under load that is not its adapter's
reference counts as a mix-up. If not (mode "closest"), a reply counts as a mix-up only when it is
closer to the other adapter's reference than to its own (longest common prefix, then similarity),
and the replies that match neither exactly are counted apart as "diverged".

Run: .venv/bin/python bench/serve_load.py [--clients 16] [--seconds 60] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from _serve import KEY, agentkit_serve, server_tail

ADAPTERS = ("bench-gguf-lora-a", "bench-gguf-lora-b")
PROMPTS = [
    "Name three primary colours.",
    "What is the capital of France?",
    "Give me a tip for sleeping better.",
    "Describe a cat in one sentence.",
    "Why do leaves change colour in autumn?",
    "Write a haiku about the sea.",
    "How do I boil an egg?",
    "What is 12 times 7?",
]


@dataclass
class Reply:
    adapter: str
    prompt: str
    start: float
    end: float = 0.0
    first: float | None = None  # first content token
    tokens: int = 0
    text: str = ""
    status: int | None = None  # None: ok; 429, 500, ... or 0 for a transport error
    error: str = ""
    kinds: list[str] = field(default_factory=list)


def check_adapters(names: tuple[str, ...]) -> str:
    """The base both adapters are LoRAs of (a chat base with a GGUF, so llama.cpp serves them)."""
    from agentkit.models.engines import gguf_path
    from agentkit.registry import Registry

    registry = Registry.default()
    if names == ADAPTERS and any(a not in registry for a in names):
        from lora_swap import ensure_adapters  # makes exactly these two

        ensure_adapters()
    cards = [registry.card(a) for a in names]
    bases = {c.base for c in cards}
    assert all(c.kind.value == "adapter" and c.method == "lora" for c in cards), [(c.id, c.method) for c in cards]
    assert len(bases) == 1, f"the adapters have different bases: {bases}"
    base = bases.pop()
    assert base and gguf_path(registry, registry.card(base)) is not None, f"{base} has no GGUF"
    return base


async def one(client: Any, adapter: str, prompt: str, tokens: int, stream: bool = True) -> Reply:
    import openai

    reply = Reply(adapter, prompt, time.perf_counter())
    messages = [{"role": "user", "content": prompt}]
    try:
        if stream:
            parts = []
            events = await client.chat.completions.create(
                model=adapter, messages=messages, max_tokens=tokens, temperature=0, seed=0, stream=True,
                stream_options={"include_usage": True})  # fmt: skip
            async for chunk in events:
                for choice in chunk.choices:
                    if choice.delta.content:
                        if reply.first is None:
                            reply.first = time.perf_counter()
                        parts.append(choice.delta.content)
                if chunk.usage is not None:
                    reply.tokens = chunk.usage.completion_tokens
            reply.text = "".join(parts)
        else:
            whole = await client.chat.completions.create(model=adapter, messages=messages, max_tokens=tokens,
                                                         temperature=0, seed=0)  # fmt: skip
            reply.text, reply.tokens = whole.choices[0].message.content or "", whole.usage.completion_tokens
    except openai.APIStatusError as exc:
        reply.status, reply.error = exc.status_code, str(exc)[:200]
    except Exception as exc:  # noqa: BLE001 - a transport error or a broken stream, counted
        reply.status, reply.error = 0, f"{type(exc).__name__}: {exc}"[:200]
    reply.end = time.perf_counter()
    return reply


def closeness(text: str, ref: str) -> tuple[int, float]:
    prefix = len(os.path.commonprefix([text, ref]))
    return prefix, difflib.SequenceMatcher(None, text, ref).ratio()


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def bench(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    import openai

    def new_client() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=600)

    adapters = tuple(args.adapters)
    solo = new_client()
    # ---- references, one request at a time -----------------------------------------------------
    await one(solo, adapters[0], PROMPTS[0], args.tokens)  # warm-up: model load, LoRA conversions
    await one(solo, adapters[1], PROMPTS[0], args.tokens)
    refs: dict[tuple[str, str], str] = {}
    stream_mismatch, solo_tokens, solo_seconds = 0, 0, 0.0
    for prompt in PROMPTS:
        for adapter in adapters:
            whole = await one(solo, adapter, prompt, args.tokens, stream=False)
            assert whole.status is None, whole.error
            refs[(adapter, prompt)] = whole.text
    for prompt in PROMPTS:  # again, streamed, adapters in the other order: the single-client rate too
        for adapter in reversed(adapters):
            streamed = await one(solo, adapter, prompt, args.tokens)
            assert streamed.status is None, streamed.error
            stream_mismatch += streamed.text != refs[(adapter, prompt)]
            solo_tokens += streamed.tokens
            solo_seconds += streamed.end - streamed.start
    prompts = [p for p in PROMPTS if refs[(adapters[0], p)] != refs[(adapters[1], p)]]
    assert prompts, "the two adapters give the same reply to every prompt: mix-ups could not be seen"

    # ---- is greedy exact under concurrency? ------------------------------------------------------
    clients = [new_client() for _ in range(args.clients)]
    burst = await asyncio.gather(*(one(clients[i], adapters[i % 2], prompts[i % len(prompts)], args.tokens)
                                   for i in range(args.clients)))  # fmt: skip
    burst_failed = [r for r in burst if r.status is not None]
    burst_diff = [r for r in burst if r.status is None and r.text != refs[(r.adapter, r.prompt)]]
    exact = not burst_diff

    # ---- the load ----------------------------------------------------------------------------------
    start = time.perf_counter()
    deadline = start + args.seconds
    replies: list[Reply] = []

    async def client_loop(i: int) -> None:
        k = 0
        while time.perf_counter() < deadline:
            adapter, prompt = adapters[(i + k) % 2], prompts[(i + k // 2) % len(prompts)]
            k += 1
            reply = await one(clients[i], adapter, prompt, args.tokens)
            replies.append(reply)
            if reply.status == 429:
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client_loop(i) for i in range(args.clients)))
    end = max((r.end for r in replies), default=time.perf_counter())
    await asyncio.gather(solo.close(), *(c.close() for c in clients))
    return {"refs": refs, "prompts": prompts, "stream_mismatch": stream_mismatch,
            "solo_rate": solo_tokens / solo_seconds, "burst_failed": burst_failed, "burst_diff": burst_diff,
            "exact": exact, "replies": replies, "elapsed": end - start}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tokens", type=int, default=32, help="max_tokens of every reply")
    parser.add_argument("--max-concurrent", type=int, default=None, help="the server's; default: --clients")
    parser.add_argument("--adapters", nargs=2, default=list(ADAPTERS), metavar="ADAPTER")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything loads OpenMP (models/threads.py)
    max_concurrent = args.max_concurrent or args.clients

    base = check_adapters(tuple(args.adapters))
    with agentkit_serve("--max-concurrent", str(max_concurrent), "--max-tokens", "256",
                        max_runtime_s=args.seconds + 900) as served:  # fmt: skip
        out = asyncio.run(bench(served.base_url, args))
        alive = served.proc.poll() is None
        log = server_tail(served, 200_000)

    refs, replies, adapters = out["refs"], out["replies"], tuple(args.adapters)
    ok = [r for r in replies if r.status is None]
    n429 = sum(r.status == 429 for r in replies)
    errors = [r for r in replies if r.status not in (None, 429)]
    mixups, diverged, exact_other = 0, 0, 0
    for r in ok:
        own = refs[(r.adapter, r.prompt)]
        other = refs[(adapters[1 - adapters.index(r.adapter)], r.prompt)]
        if r.text == own:
            continue
        exact_other += r.text == other
        diverged += r.text != other
        if out["exact"] or r.text == other or closeness(r.text, other) > closeness(r.text, own):
            mixups += 1
    ttft = [(r.first - r.start) * 1000 for r in ok if r.first is not None]
    tokens = sum(r.tokens for r in ok)
    rate = tokens / out["elapsed"]

    print(f"## {args.clients} streaming clients x {args.seconds:.0f} s, loopback, base {base} + LoRAs "
          f"{', '.join(adapters)} (llama.cpp), greedy, max_tokens={args.tokens}, server --max-concurrent "
          f"{max_concurrent}")  # fmt: skip
    print(f"references: {len(out['prompts'])}/{len(PROMPTS)} prompts tell the adapters apart; streamed alone "
          f"== whole alone: {2 * len(PROMPTS) - out['stream_mismatch']}/{2 * len(PROMPTS)}")  # fmt: skip
    mode = "exact" if out["exact"] else "closest"
    print(f"burst of {args.clients} at once: {args.clients - len(out['burst_diff']) - len(out['burst_failed'])}/"
          f"{args.clients} equal to their references ({len(out['burst_failed'])} failed) -> mix-up rule: {mode}")  # fmt: skip
    print(f"{'requests ok':>12} {'errors':>7} {'429s':>5} {'TTFT p50':>10} {'TTFT p95':>10} {'agg tok/s':>10} "
          f"{'1 client':>9} {'ratio':>6} {'mix-ups':>8}")  # fmt: skip
    print(f"{len(ok):>12} {len(errors):>7} {n429:>5} {pct(ttft, 50):7.0f} ms {pct(ttft, 95):7.0f} ms "
          f"{rate:10.1f} {out['solo_rate']:9.1f} {rate / out['solo_rate']:5.2f}x {mixups:>8}")  # fmt: skip
    latency = [(r.end - r.start) * 1000 for r in ok]
    print(f"whole-reply latency p50 {pct(latency, 50):.0f} ms, p95 {pct(latency, 95):.0f} ms; "
          f"{tokens} tokens in {out['elapsed']:.1f} s; replies equal to the other adapter's reference: "
          f"{exact_other}; equal to neither reference: {diverged}")  # fmt: skip
    for r in errors[:5]:
        print(f"  error {r.status}: {r.error}")
    if out["burst_diff"]:
        r = out["burst_diff"][0]
        print(f"  burst reply off its reference ({r.adapter}, {r.prompt!r}): {r.text!r} "
              f"vs {refs[(r.adapter, r.prompt)]!r}")
    print(f"server still up: {alive}; tracebacks in its log: {log.count('Traceback')}")
    met = not errors and not n429 and not mixups
    print(f"target (0 errors, 0 429s with max_concurrent = clients, 0 mix-ups): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()

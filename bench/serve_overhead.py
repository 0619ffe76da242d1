"""Serving overhead (issue 15 section 5): tokens/s of a chat reply through `agentkit serve`'s
/v1/chat/completions, driven by the real `openai` client, vs `LocalChatModel` in this process --
same model, same engine, greedy (temperature 0), same max_tokens, same prompts -- for replies
whole and streamed. Target: server / in-process >= 0.9x.

The server is a real `agentkit serve` process on a free loopback port. Runs are interleaved (for
each repeat and prompt, in-process then server, the order flipped every other prompt), so load
from anything else on the machine hits both sides alike. Both sides generate on one thread
(models/threads.py's default; the server has no thread setting) with OMP_WAIT_POLICY=PASSIVE,
and each side is idle while the other runs: the CPU each process used during the other's turn is
printed as a check (the bench process's share during server turns is the client's own cost,
which is part of what serving costs). Replies are compared too: greedy, they should be equal.

Run: .venv/bin/python bench/serve_overhead.py [--model smollm2-135m-instruct] [--repeats 3] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from _serve import KEY, agentkit_serve
from chat_overhead import PROMPTS  # the same prompts as the in-process overhead bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--engine", default="auto", help="auto | llamacpp | transformers, on both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of every reply")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything loads OpenMP (models/threads.py)

    import openai
    import psutil

    from agentkit.models import LocalChatModel

    me = psutil.Process()

    def my_cpu() -> float:
        t = me.cpu_times()
        return t.user + t.system

    llm = LocalChatModel(model=args.model, engine=args.engine, temperature=0, max_tokens=args.tokens)
    runtime = llm.load_runtime()
    engine = getattr(getattr(runtime, "engine", None), "value", args.engine)
    threads = getattr(runtime, "threads", None)

    with agentkit_serve("--engine", args.engine, "--max-concurrent", "2", max_runtime_s=1200) as served:
        client = openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0, timeout=600)

        def local_whole(prompt: str) -> tuple[int, str]:
            reply = llm.invoke(prompt)
            return reply.usage_metadata["output_tokens"], str(reply.content)

        def local_stream(prompt: str) -> tuple[int, str]:
            text, last = [], None
            for chunk in llm.stream(prompt):
                text.append(str(chunk.content))
                last = chunk
            return last.usage_metadata["output_tokens"], "".join(text)

        def messages(prompt: str) -> list[dict[str, str]]:
            return [{"role": "user", "content": prompt}]

        def server_whole(prompt: str) -> tuple[int, str]:
            reply = client.chat.completions.create(model=args.model, messages=messages(prompt),
                                                   max_tokens=args.tokens, temperature=0)  # fmt: skip
            return reply.usage.completion_tokens, reply.choices[0].message.content or ""

        def server_stream(prompt: str) -> tuple[int, str]:
            text, usage = [], None
            for chunk in client.chat.completions.create(model=args.model, messages=messages(prompt),
                                                        max_tokens=args.tokens, temperature=0, stream=True,
                                                        stream_options={"include_usage": True}):  # fmt: skip
                text.extend(c.delta.content or "" for c in chunk.choices)
                usage = chunk.usage or usage
            return usage.completion_tokens, "".join(text)

        pairs: dict[str, tuple[Callable[[str], tuple[int, str]], Callable[[str], tuple[int, str]]]] = {
            "whole": (local_whole, server_whole),
            "streamed": (local_stream, server_stream),
        }
        for local, server in pairs.values():  # warm-up: model loads, first-call allocations
            local(PROMPTS[0]), server(PROMPTS[0])

        rates: dict[tuple[str, str], list[float]] = {(m, s): [] for m in pairs for s in ("local", "server")}
        seconds: dict[tuple[str, str], list[float]] = {(m, s): [] for m in pairs for s in ("local", "server")}
        same = {m: 0 for m in pairs}
        cpu = {"server during local": 0.0, "server during server": 0.0, "bench during server": 0.0,
               "bench during local": 0.0}  # fmt: skip
        wall = {"local": 0.0, "server": 0.0}
        turn = 0
        for _ in range(args.repeats):
            for prompt in PROMPTS:
                for mode, (local, server) in pairs.items():
                    texts = {}
                    order = ("local", "server") if turn % 2 == 0 else ("server", "local")
                    turn += 1
                    for side in order:
                        run = local if side == "local" else server
                        c_me, c_srv = my_cpu(), served.cpu_s()
                        start = time.perf_counter()
                        n, texts[side] = run(prompt)
                        elapsed = time.perf_counter() - start
                        cpu[f"bench during {side}"] += my_cpu() - c_me
                        cpu[f"server during {side}"] += served.cpu_s() - c_srv
                        wall[side] += elapsed
                        rates[(mode, side)].append(n / elapsed)
                        seconds[(mode, side)].append(elapsed)
                    same[mode] += texts["local"] == texts["server"]

    n = args.repeats * len(PROMPTS)
    print(f"## {args.model}, engine {engine}, n_threads {threads} (both sides), greedy, "
          f"max_tokens={args.tokens}, {len(PROMPTS)} prompts x {args.repeats} repeats, interleaved")
    print(f"{'reply':10} {'in-process':>12} {'server':>12} {'ratio':>7} {'+ms/request':>12} {'same text':>10}")
    met = True
    for mode in pairs:
        loc, srv = statistics.median(rates[(mode, "local")]), statistics.median(rates[(mode, "server")])
        pairs_s = zip(seconds[(mode, "server")], seconds[(mode, "local")])
        extra_ms = statistics.median(s - l for s, l in pairs_s) * 1000
        print(f"{mode:10} {loc:8.1f} t/s {srv:8.1f} t/s {srv / loc:6.3f}x {extra_ms:10.1f} {same[mode]:>5}/{n}")
        met = met and srv / loc >= 0.9
    print(f"target (server >= 0.9x in-process, both): {'met' if met else 'MISSED'}")
    print(f"CPU check: server process {cpu['server during local']:.2f} s CPU during {wall['local']:.1f} s of "
          f"in-process turns (idle is ~0); bench process {cpu['bench during server']:.2f} s CPU during "
          f"{wall['server']:.1f} s of server turns (the openai client); server process "
          f"{cpu['server during server']:.2f} s CPU in its own turns")  # fmt: skip


if __name__ == "__main__":
    main()

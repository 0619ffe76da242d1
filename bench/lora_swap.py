"""LoRA hot swap on llama.cpp: switching between GGUF LoRAs loaded on one server, per request, vs
loading the base with that LoRA (a new server). Targets: a switch < 10 ms, >= 50x faster than a load.

Two random LoRAs (all linear layers, r=8) on the built-in SmolLM2 are made once in the registry
(`bench-gguf-lora-a`, `-b`) and converted with `ensure_gguf_lora`. One server holds both at scale 0;
each request names its adapter. What a switch costs is measured two ways:
  switch itself   requests that evaluate their whole (short) prompt either way (cache_prompt off):
                  median time of a request whose adapter differs from the previous one's, minus
                  that of one whose adapter is the same;
  with the cache  the same prompt again under the same adapter (its KV reused) vs under the other
                  one (the slot's KV is dropped and the prompt evaluated again).

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/lora_swap.py [--requests 40] [--loads 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

BASE = "smollm2-135m-instruct"
ADAPTERS = ("bench-gguf-lora-a", "bench-gguf-lora-b")


def ensure_adapters() -> tuple[Path, list[Path]]:
    """The base GGUF and the GGUF LoRA of each bench adapter (made and converted on first run)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agentkit.models.engines import gguf_path
    from agentkit.registry import Registry, SourceInfo
    from agentkit.registry.gguf_lora import ensure_gguf_lora

    registry = Registry.default()
    base_gguf = gguf_path(registry, registry.card(BASE))
    assert base_gguf is not None, f"{BASE} has no GGUF"
    for seed, adapter in enumerate(ADAPTERS):
        if adapter in registry:
            continue

        def write(stage: Path, seed: int = seed) -> dict[str, Any]:
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_pretrained(registry.path(BASE), dtype=torch.float32)
            config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
            get_peft_model(model, config).save_pretrained(stage)
            return {"kind": "adapter", "task": "causal_lm", "base": BASE, "method": "lora",
                    "source": SourceInfo(type="tuning", ref="bench/lora_swap.py"),
                    "lineage": {"base_weights_sha256": registry.card(BASE).weights}}  # fmt: skip

        registry.create_entry(adapter, write)
    return base_gguf, [ensure_gguf_lora(registry, a, base=BASE, base_gguf=base_gguf) for a in ADAPTERS]


def start(base_gguf: Path, loras: list[Path], slots: int = 1) -> Any:
    from agentkit.models.llamacpp import start_server  # the engine's set-up, LoRAs at scale 0

    return start_server(base_gguf, threads=1, n_ctx=1024, loras=loras, slots=slots)


def request_ms(server: Any, prompt: list[int], active: int, n: int, cache: bool, **extra: Any) -> float:
    body = {"prompt": prompt, "max_tokens": 2, "temperature": 0, "cache_prompt": cache,
            "lora": [{"id": i, "scale": 1.0 if i == active else 0.0} for i in range(n)], **extra}  # fmt: skip
    t0 = time.perf_counter()
    reply = server.handle_completions(body)
    elapsed = (time.perf_counter() - t0) * 1000
    assert "choices" in reply, reply
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per measured pattern")
    parser.add_argument("--loads", type=int, default=3, help="fresh base + LoRA loads to time")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from transformers import AutoTokenizer

    from agentkit.registry import Registry

    base_gguf, loras = ensure_adapters()
    tokenizer = AutoTokenizer.from_pretrained(Registry.default().path(BASE))
    short = tokenizer("Name a colour:", add_special_tokens=False)["input_ids"]  # 4 tokens
    question = [{"role": "user", "content": "Name three primary colours."}]
    # 35 tokens: SmolLM2's default system prompt + the question
    chat = list(tokenizer.apply_chat_template(question, add_generation_prompt=True, tokenize=True,
                                              return_dict=False))  # fmt: skip

    loads = []
    for _ in range(args.loads):  # the alternative to a switch: the base with that LoRA, loaded anew
        t0 = time.perf_counter()
        server = start(base_gguf, loras[:1])
        request_ms(server, short, 0, 1, cache=False)  # the first request pays for lazy allocations
        loads.append((time.perf_counter() - t0) * 1000)
        del server

    server = start(base_gguf, loras)
    n = len(loras)
    request_ms(server, short, 0, n, cache=False)  # warm: buffers, graph
    same, switched = [], []
    for i in range(args.requests):  # a, a, b, b, a, a, ...: every other request switches
        active = (i // 2) % 2
        (switched if i % 2 == 0 else same).append(request_ms(server, short, active, n, cache=False))
    cached, recomputed = [], []
    for i in range(args.requests):
        active = (i // 2) % 2
        (recomputed if i % 2 == 0 else cached).append(request_ms(server, chat, active, n, cache=True))

    del server
    server = start(base_gguf, loras, slots=n)  # one slot per adapter, pinned by id_slot
    for active in range(n):
        request_ms(server, chat, active, n, cache=True, id_slot=active)
    pinned = [request_ms(server, chat, i % n, n, cache=True, id_slot=i % n) for i in range(args.requests)]

    med = {name: statistics.median(values) for name, values in
           {"load": loads, "same": same, "switched": switched, "cached": cached, "recomputed": recomputed,
            "pinned": pinned}.items()}  # fmt: skip
    switch = max(med["switched"] - med["same"], 0.01)  # floor: a switch below timer noise
    runs = ", ".join(f"{t:.0f}" for t in loads)
    print(f"load base + LoRA (new server + first request) {med['load']:8.1f} ms  (runs: {runs})")
    print(f"request, same adapter     ({len(short)}-token prompt, 2 new) {med['same']:8.2f} ms")
    print(f"request, adapter switched ({len(short)}-token prompt, 2 new) {med['switched']:8.2f} ms")
    print(f"switch itself                                   {switch:8.2f} ms   target < 10 ms")
    print(f"load / switch                                   {med['load'] / switch:8.0f} x   target >= 50x")
    print(f"with the prompt cache ({len(chat)}-token chat prompt): same adapter {med['cached']:.1f} ms, "
          f"switched {med['recomputed']:.1f} ms (the prompt evaluated again); load / switched = "
          f"{med['load'] / med['recomputed']:.0f}x")
    print(f"one slot per adapter (id_slot), every request switches: {med['pinned']:.1f} ms (its own KV kept)")
    print(json.dumps({"median_ms": med, "switch_ms": switch, "load_over_switch": med["load"] / switch}))


if __name__ == "__main__":
    main()

"""Hot swap on one loaded SmolLM2: LoRA and prompt-learning adapters switched per call give what a
plain PEFT model of each adapter gives, in any order, from any thread."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from agentkit.models import LocalChatModel
from agentkit.models.runtime import GenerationParams, LoadedModel
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.trainer import Run

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
QUESTION = "Say the secret word for item 7."
ADAPTERS = {  # registry id -> method, its tune.yaml block
    "swap-lora-a": ("lora", {"r": 8}),  # all linear layers: 210 tuner layers
    "swap-lora-b": ("lora", {"r": 4, "target_modules": ["q_proj", "v_proj"]}),  # a subset of them
    "swap-prefix": ("prefix_tuning", {"num_virtual_tokens": 8}),  # keys/values on every layer
    "swap-prompt": (
        "prompt_tuning",
        {"num_virtual_tokens": 8, "init": "text", "init_text": "Answer the question:"},
    ),
}
ALL = [None, *ADAPTERS]  # None: the bare base
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    """An isolated registry (so LoadedModel.get caches a base of its own) with four tiny adapters."""
    root = tmp_path_factory.mktemp("hot-swap")
    home = Registry(root / "home")
    home.create_entry(BASE, lambda s: copy_hf_folder(registry.path(BASE), s, link=True))
    rows = [{"instruction": f"Say the secret word for item {i}.", "output": f"The secret word is banana-{i % 3}."}
            for i in range(8)]  # fmt: skip
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for seed, (adapter, (method, block)) in enumerate(ADAPTERS.items()):
        config = TuneConfig.model_validate({
            "base": BASE, "method": method, method: block, "output": adapter,
            "data": {"train": str(root / "train.jsonl"), "eval_fraction": 0},
            "train": {"learning_rate": 1e-2, "batch_size": 1, "max_length": 64, "max_steps": 2, "seed": seed},
        })  # fmt: skip
        run = Run.prepare(config, home)
        run.fit()
        run.register()
    return home


@pytest.fixture(scope="module")
def loaded(home: Registry) -> LoadedModel:
    return LoadedModel.get(BASE, home)


@pytest.fixture(scope="module")
def prompt(loaded: LoadedModel) -> list[int]:
    return loaded.encode_chat([{"role": "user", "content": QUESTION}])


def greedy(module: Any, prompt: list[int], eos: list[int]) -> list[int]:
    """Greedy decoding by full forward passes (no KV cache, no generate()): the reference."""
    import torch

    ids = list(prompt)
    with torch.inference_mode():
        while len(ids) - len(prompt) < NEW_TOKENS:
            ids.append(int(module(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            if ids[-1] in eos:
                break
    return ids[len(prompt) :]


@pytest.fixture(scope="module")
def expected(home: Registry, loaded: LoadedModel, prompt: list[int]) -> dict[str | None, dict[str, Any]]:
    """Per adapter, from plain `PeftModel.from_pretrained` on a fresh base: logits for the prompt,
    greedy tokens, and log P(text | prompt) from the full logits of prompt + text."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(
        home.path(BASE), use_safetensors=True, dtype=torch.float32
    ).eval()
    texts = ["The secret word is banana-1.", "No."]
    out: dict[str | None, dict[str, Any]] = {}
    for adapter in ALL:
        model = fresh if adapter is None else PeftModel.from_pretrained(fresh, home.path(adapter)).eval()
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt])).logits
            logprobs = []
            for text in texts:
                cont = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
                full = model(input_ids=torch.tensor([prompt + cont])).logits[0].log_softmax(-1)
                # token at position p is predicted at p - 1; index from the end (virtual tokens lead)
                rows = torch.arange(full.shape[0] - len(cont) - 1, full.shape[0] - 1)
                logprobs.append(float(full[rows, torch.tensor(cont)].sum()))
        out[adapter] = {"logits": logits, "tokens": greedy(model, prompt, loaded.eos_ids), "texts": texts,
                        "logprobs": logprobs}  # fmt: skip
        if adapter is not None and ADAPTERS[adapter][0] == "lora":
            fresh = model.unload()  # LoRA layers were injected into `fresh`: take them out again
    return out


def logits_for(loaded: LoadedModel, adapter: str | None, prompt: list[int]) -> Any:
    import torch

    with loaded.lock, loaded._using(adapter) as module, torch.inference_mode():
        return module(input_ids=torch.tensor([prompt])).logits


@pytest.mark.parametrize("adapter", ALL)
def test_each_adapter_matches_a_plain_peft_model(loaded: LoadedModel, prompt: list[int], expected: dict, adapter: str | None) -> None:  # fmt: skip
    import torch

    want = expected[adapter]
    got = logits_for(loaded, adapter, prompt)
    assert got.shape == want["logits"].shape and torch.allclose(got, want["logits"], atol=1e-5)
    if adapter is not None:  # the adapter does change the model, so the equalities above say something
        assert not torch.allclose(got[0, -len(prompt) :], expected[None]["logits"][0], atol=1e-2)
    # generate(): output ids start with the prompt and continue as greedy decoding does; logits
    # processors (grammar, wrap-up) see prompt + output ids only, as they count output tokens
    seen: list[int] = []
    kwargs = loaded._generate_kwargs(prompt, GenerationParams(max_new_tokens=NEW_TOKENS), None)
    kwargs["logits_processor"] = [lambda input_ids, scores: seen.append(input_ids.shape[1]) or scores]
    with loaded.lock, loaded._using(adapter) as module, torch.inference_mode():
        ids = module.generate(**kwargs)[0].tolist()
    assert ids[: len(prompt)] == prompt and ids[len(prompt) :] == want["tokens"]
    assert seen == list(range(len(prompt), len(ids)))
    # continuation_logprobs keeps only the last logits; prompt tuning puts 8 virtual tokens in front
    scores = loaded.continuation_logprobs(prompt, want["texts"], adapter=adapter)
    assert scores == pytest.approx(want["logprobs"], abs=1e-3)


def test_switching_in_any_order_reproduces_each_adapter(loaded: LoadedModel, prompt: list[int], expected: dict) -> None:  # fmt: skip
    import torch

    # LoRA -> LoRA -> prefix -> LoRA -> base -> prompt -> LoRA; prefix -> prompt ran above
    order = ["swap-lora-b", "swap-lora-a", "swap-prefix", "swap-lora-b", None, "swap-prompt", "swap-lora-a"]
    for adapter in order:
        got = logits_for(loaded, adapter, prompt)
        assert torch.allclose(got, expected[adapter]["logits"], atol=1e-5), f"{adapter} after a switch"


def test_fast_lora_switch_matches_peft_set_adapter(
    home: Registry, loaded: LoadedModel, prompt: list[int]
) -> None:
    """Both LoRA adapters in one plain PeftModel, switched by PEFT's set_adapter (a walk over every
    module): same logits and the same active adapters on every tuner layer as our switch."""
    import torch
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import AutoModelForCausalLM

    for adapter in ("swap-lora-a", "swap-lora-b"):  # loaded, even when this test runs alone
        logits_for(loaded, adapter, prompt)
    names = {adapter: loaded._adapters[adapter].lora for adapter in ("swap-lora-a", "swap-lora-b")}
    fresh = AutoModelForCausalLM.from_pretrained(home.path(BASE), use_safetensors=True, dtype=torch.float32)
    plain = PeftModel.from_pretrained(fresh, home.path("swap-lora-a"), adapter_name=names["swap-lora-a"])
    plain.load_adapter(home.path("swap-lora-b"), adapter_name=names["swap-lora-b"])
    plain.eval()

    def active(model: Any) -> list[list[str]]:
        return [layer.active_adapters for layer in model.modules() if isinstance(layer, BaseTunerLayer)]

    for adapter in ("swap-lora-b", "swap-lora-a", "swap-prompt", "swap-lora-b"):
        ours = logits_for(loaded, adapter, prompt)
        if adapter == "swap-prompt":
            assert all(layers == [] for layers in active(loaded._switch._lora))  # no LoRA under a prompt
            continue
        plain.set_adapter(names[adapter])
        with torch.inference_mode():
            assert torch.equal(plain(input_ids=torch.tensor([prompt])).logits, ours)
        assert active(loaded._switch._lora) == active(plain)
        assert loaded._switch._lora.active_adapters == plain.active_adapters == [names[adapter]]


def test_chat_model_with_prompt_learning_adapters(
    home: Registry, loaded: LoadedModel, expected: dict
) -> None:
    llm = LocalChatModel(home=str(home.root), max_new_tokens=NEW_TOKENS)
    for adapter in ("swap-prefix", "swap-prompt"):
        reply = LocalChatModel(home=str(home.root), adapter=adapter, max_new_tokens=NEW_TOKENS).invoke(QUESTION)  # fmt: skip
        assert reply.content == loaded.tokenizer.decode(expected[adapter]["tokens"], skip_special_tokens=True)
        assert reply.response_metadata["adapter"] == adapter
        assert llm.bind(adapter=adapter).invoke(QUESTION).content == reply.content
        assert llm.invoke(QUESTION, adapter=adapter).content == reply.content
        assert "".join(c.content for c in llm.stream(QUESTION, adapter=adapter)) == reply.content


def test_concurrent_calls_on_different_adapters_match_sequential_ones(home: Registry) -> None:
    llm = LocalChatModel(home=str(home.root), max_new_tokens=NEW_TOKENS)
    sequential = {adapter: llm.invoke(QUESTION, adapter=adapter).content for adapter in ALL}
    calls = ALL * 2
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            if i % 3:
                results[i] = llm.invoke(QUESTION, adapter=calls[i]).content
            else:  # streams too: their worker thread takes the lock, not the caller
                results[i] = "".join(c.content for c in llm.stream(QUESTION, adapter=calls[i]))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert [results[i] for i in range(len(calls))] == [sequential[adapter] for adapter in calls]

"""The llama.cpp engine on the built-in SmolLM2-135M's GGUF: what the transformers engine does, plus
the `engine` rule (auto / forced) and prompt-prefix reuse."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from agentkit.errors import BadInputError
from agentkit.models import LocalChatModel
from agentkit.models.engines import Engine, gguf_path, resolve_engine
from agentkit.registry import Registry, SourceInfo
from agentkit.tools.calculator import calculator
from tests.integration.conftest import ensure_second_model

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
SECOND_GGUF_MODEL = "smollm2-gguf-copy"


def ensure_second_gguf_model() -> str:
    """A second registry entry with a GGUF: the built-in's folder and its GGUF, kept in the entry."""
    from agentkit.registry.card import GgufFile
    from agentkit.registry.importer import copy_hf_folder
    from agentkit.registry.store import sha256_file

    registry = Registry.default()
    gguf = gguf_path(registry, registry.card(BASE))
    assert gguf is not None

    def write(stage):  # type: ignore[no-untyped-def]
        fields = copy_hf_folder(registry.path(BASE), stage, link=True, source=SourceInfo(type="gguf", ref=str(gguf)))
        shutil.copy2(gguf, stage / gguf.name)
        return fields | {"gguf": GgufFile(file=gguf.name, sha256=sha256_file(gguf))}

    registry.create_entry(SECOND_GGUF_MODEL, write, exist_ok=True)
    return SECOND_GGUF_MODEL


def llm(**kwargs) -> LocalChatModel:  # type: ignore[no-untyped-def]
    return LocalChatModel(engine="llamacpp", **kwargs)


class Person(BaseModel):
    """A person."""

    name: str = Field(description="full name")
    age: int = Field(description="age in years")
    hobbies: list[str] = Field(description="a few hobbies")


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "It's sunny."


# ---- which engine ------------------------------------------------------------------------------
def test_auto_picks_llamacpp_for_an_entry_with_a_gguf(registry: Registry) -> None:
    assert gguf_path(registry, registry.card(BASE)).suffix == ".gguf"
    assert resolve_engine("auto", BASE, None, registry) is Engine.LLAMACPP
    assert resolve_engine("auto", BASE, None, registry, auto_picks_llamacpp=False) is Engine.TRANSFORMERS
    reply = LocalChatModel(max_new_tokens=4).invoke("Hi")
    assert reply.response_metadata["engine"] == "llamacpp"
    assert LocalChatModel(max_new_tokens=4, engine="transformers").invoke("Hi").response_metadata["engine"] == "transformers"


def test_auto_picks_transformers_without_a_gguf_and_forcing_llamacpp_names_the_fix(registry: Registry) -> None:
    copy = ensure_second_model()  # an HF-folder import: no GGUF
    assert resolve_engine("auto", copy, None, registry) is Engine.TRANSFORMERS
    with pytest.raises(BadInputError, match="engine: transformers"):
        llm(model=copy).invoke("Hi")


@pytest.fixture(scope="module")
def adapters(registry: Registry) -> dict[str, str]:
    """Two untrained adapters of the built-in, made with PEFT directly: a LoRA and a prefix."""
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    made = {}
    for adapter, config in (
        ("llcpp-probe-lora", LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")),
        ("llcpp-probe-prefix", PrefixTuningConfig(num_virtual_tokens=2, task_type="CAUSAL_LM")),
    ):
        method = "lora" if isinstance(config, LoraConfig) else "prefix_tuning"

        def write(stage, config=config, method=method):  # type: ignore[no-untyped-def]
            base = AutoModelForCausalLM.from_pretrained(registry.path(BASE), local_files_only=True)
            get_peft_model(base, config).save_pretrained(stage)
            return {"kind": "adapter", "task": "causal_lm", "base": BASE, "method": method,
                    "source": SourceInfo(type="tuning", ref="test")}  # fmt: skip

        registry.create_entry(adapter, write, exist_ok=True)
        made[method] = adapter
    return made


def test_auto_sends_a_lora_to_llamacpp_and_a_prefix_to_transformers_forcing_fails_in_one_line(
    registry: Registry, adapters: dict[str, str]
) -> None:
    assert resolve_engine("auto", BASE, adapters["lora"], registry) is Engine.LLAMACPP
    assert resolve_engine("auto", BASE, adapters["prefix_tuning"], registry) is Engine.TRANSFORMERS
    reply = LocalChatModel(adapter=adapters["lora"], max_new_tokens=4).invoke("Hi")
    assert (reply.response_metadata["engine"], reply.response_metadata["adapter"]) == ("llamacpp", adapters["lora"])
    reply = LocalChatModel(adapter=adapters["prefix_tuning"], max_new_tokens=4).invoke("Hi")
    assert reply.response_metadata["engine"] == "transformers"
    with pytest.raises(BadInputError, match="prefix_tuning adapter .* engine: transformers") as err:
        llm(adapter=adapters["prefix_tuning"]).invoke("Hi")
    assert "\n" not in str(err.value)


def test_an_adapter_of_another_base_is_refused_in_one_line(registry: Registry, adapters: dict[str, str]) -> None:
    other = ensure_second_gguf_model()  # another base entry with its own GGUF
    with pytest.raises(BadInputError, match=f"not an adapter of '{other}'") as err:
        llm(model=other, adapter=adapters["lora"]).invoke("Hi")
    assert "\n" not in str(err.value)
    # and a prompt-learning adapter forced onto llama.cpp names the engine that runs it
    with pytest.raises(BadInputError, match="engine: transformers"):
        llm(adapter=adapters["prefix_tuning"]).invoke("Hi")


def test_two_adapters_from_several_threads_each_reply_matches_its_own(registry: Registry) -> None:
    """LoRAs switched per request on one loaded base: concurrent calls never see each other's adapter."""
    from concurrent.futures import ThreadPoolExecutor

    from agentkit.models.llamacpp import LlamaCppModel
    from tests.integration.test_gguf_lora import random_lora

    names: list[str | None] = [None]
    for seed, adapter in enumerate(("llcpp-swap-a", "llcpp-swap-b")):
        if adapter not in registry:
            random_lora(registry, adapter, seed)
        names.append(adapter)
    question = [HumanMessage("Name three primary colours.")]

    def reply(adapter: str | None) -> str:
        return str(llm(adapter=adapter, max_new_tokens=16).invoke(question).content)

    alone = {name: reply(name) for name in names}
    assert len(set(alone.values())) == 3, alone  # the adapters really change the reply
    server = LlamaCppModel.get(BASE).server
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda i: (names[i % 3], reply(names[i % 3])), range(18)))
    assert all(text == alone[name] for name, text in together), together
    assert LlamaCppModel.get(BASE).server is server  # no reload: every adapter was loaded already


# ---- invoke, stream, batch, async ----------------------------------------------------------------
def test_invoke_stream_batch_and_async_agree() -> None:
    model = llm(max_new_tokens=24)
    reply = model.invoke("Name three fruits.")
    assert reply.content and reply.response_metadata["finish_reason"] in ("stop", "length")
    usage = reply.usage_metadata
    assert usage["output_tokens"] > 0 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    chunks = list(model.stream("Name three fruits."))
    assert len(chunks) > 2 and "".join(str(c.content) for c in chunks) == reply.content
    assert chunks[-1].usage_metadata["output_tokens"] == usage["output_tokens"]
    assert [m.content for m in model.batch(["Name three fruits.", "Say hello."])][0] == reply.content
    assert asyncio.run(model.ainvoke("Name three fruits.")).content == reply.content


def test_the_entrys_chat_template_renders_the_prompt_both_engines_see(registry: Registry) -> None:
    from agentkit.models.runtime import encode_chat

    runtime = llm().load_runtime()
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ids = runtime.encode_chat(chat)
    assert ids == encode_chat(runtime.tokenizer, BASE, chat)
    assert runtime.tokenizer.decode(ids).startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_stop_sequence_cuts_text_in_invoke_and_stream() -> None:
    model = llm(max_new_tokens=48)
    assert "4" in model.invoke("Count from 1 to 10, separated by commas.").content
    cut = model.invoke("Count from 1 to 10, separated by commas.", stop=["4"])
    assert "4" not in cut.content and cut.response_metadata["finish_reason"] == "stop"
    streamed = "".join(str(c.content) for c in model.stream("Count from 1 to 10, separated by commas.", stop=["4"]))
    assert streamed == cut.content


def test_seed_makes_sampling_repeatable() -> None:
    model = llm(max_new_tokens=24, temperature=1.0, top_p=0.95)
    first = model.invoke("Name a color.", seed=7).content
    assert model.invoke("Name a color.", seed=7).content == first
    others = {model.invoke("Name a color.", seed=s).content for s in (1, 2, 3)}
    assert len(others | {first}) > 1


def test_timeout_stops_generation() -> None:
    model = llm(max_new_tokens=512, timeout=0.5)
    model.invoke("Hi", max_new_tokens=2)  # load first: the timeout is for generation
    started = time.perf_counter()
    reply = model.invoke("Write a very long story about a dragon.")
    assert time.perf_counter() - started < 5
    assert reply.response_metadata["finish_reason"] == "timeout" and reply.usage_metadata["output_tokens"] < 512
    streamed = list(model.stream("Write a very long story about a dragon."))
    assert streamed[-1].response_metadata["finish_reason"] == "timeout"


def test_agent_steps_reuse_the_kv_cache_of_the_shared_prefix() -> None:
    model = llm(max_new_tokens=8)
    history = [SystemMessage("You are a terse assistant. " * 20), HumanMessage("What is 2 + 2?")]
    first = model.invoke(history)
    second = model.invoke([*history, first, HumanMessage("And 3 + 3?")])
    reused = second.usage_metadata.get("input_token_details", {}).get("cache_read", 0)
    assert reused >= first.usage_metadata["input_tokens"] - 1  # everything the first step already saw


def test_concurrent_calls_are_serialised_safely() -> None:
    model = llm(max_new_tokens=12)
    expected = model.invoke("Say hello.").content
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(model.invoke("Say hello.").content)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 3


# ---- tools ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("choice", ["any", "required", "calculator", {"type": "function", "function": {"name": "calculator"}}])
def test_forced_tool_choice_gives_a_call_that_matches_its_schema(choice: object) -> None:
    msg = llm(max_new_tokens=48).bind_tools([calculator, get_weather], tool_choice=choice).invoke("What is 23 * 19?")
    assert len(msg.tool_calls) == 1 and not msg.invalid_tool_calls
    call = msg.tool_calls[0]
    assert call["name"] in ("calculator", "get_weather")
    if choice != "any" and choice != "required":
        assert call["name"] == "calculator"
    tool_ = {"calculator": calculator, "get_weather": get_weather}[call["name"]]
    tool_.args_schema.model_validate(call["args"])  # the grammar made it match


def test_auto_and_none_tool_choice() -> None:
    model = llm(max_new_tokens=48)
    first = model.bind_tools([get_weather]).invoke("What is the weather in San Francisco, CA?")
    assert [c["name"] for c in first.tool_calls] == ["get_weather"] and first.tool_calls[0]["args"]["location"]
    history = [HumanMessage("What is the weather in San Francisco, CA?"), first, get_weather.invoke(first.tool_calls[0])]
    second = model.bind_tools([get_weather]).invoke(history)  # answers instead of calling again
    assert not second.tool_calls and second.content
    assert not model.bind_tools([get_weather]).invoke("Hello!").tool_calls
    none = model.bind_tools([get_weather], tool_choice="none").invoke("What is the weather in Paris?")
    assert not none.tool_calls and "<tool" not in none.content


def test_streamed_tool_call_matches_invoke() -> None:
    bound = llm(max_new_tokens=48).bind_tools([calculator], tool_choice="calculator")
    msg = bound.invoke("What is 23 * 19?")
    streamed: AIMessage | None = None
    for chunk in bound.stream("What is 23 * 19?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and [c["args"] for c in streamed.tool_calls] == [c["args"] for c in msg.tool_calls]


def test_tool_choice_scores_agree_with_the_transformers_engine() -> None:
    # _decide_tool's threshold was calibrated on transformers: llama.cpp must score alike.
    from agentkit.models.grammar import CALL_OPENER

    chat = [{"role": "user", "content": "What is 2 + 2?"}]
    texts = [CALL_OPENER, f'{CALL_OPENER}calculator"']
    scores = {}
    for engine in ("llamacpp", "transformers"):
        runtime = LocalChatModel(engine=engine).load_runtime()
        scores[engine] = runtime.continuation_logprobs(runtime.encode_chat(chat), texts)
    assert all(abs(a - b) < 1.0 for a, b in zip(scores["llamacpp"], scores["transformers"])), scores


# ---- structured output ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_all_methods(method: str) -> None:
    person = llm(max_new_tokens=96).with_structured_output(Person, method=method).invoke("Describe Ada Lovelace.")
    assert isinstance(person, Person)


def test_structured_output_parses_even_when_the_budget_is_tight() -> None:
    for budget in (32, 48):
        person = llm(max_new_tokens=budget).with_structured_output(Person).invoke("Describe Ada Lovelace.")
        assert isinstance(person, Person)
    with pytest.raises(BadInputError, match="too small for the shortest reply"):
        llm(max_new_tokens=12).with_structured_output(Person).invoke("Describe Ada Lovelace.")


def test_malformed_schema_fails_before_generation() -> None:
    bad = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}
    with pytest.raises(BadInputError, match="grammar"):
        llm().bind_tools([bad], tool_choice="f").invoke("hi")


def test_an_imported_gguf_is_kept_in_its_entry_and_runs_after_the_original_is_gone(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from agentkit.registry.importer import import_path

    original = tmp_path_factory.mktemp("user") / "my-smol.gguf"
    shutil.copy2(gguf_path(registry, registry.card(BASE)), original)
    home = Registry(tmp_path_factory.mktemp("home"))
    home.create_entry("my-smol", lambda stage: import_path(original, stage))
    original.unlink()  # the user tidies up their downloads
    card = home.card("my-smol")
    assert card.gguf is not None and card.gguf.file == "my-smol.gguf"
    assert gguf_path(home, card) == home.path("my-smol") / "my-smol.gguf"
    reply = LocalChatModel(model="my-smol", home=str(home.root), max_new_tokens=4).invoke("Hi")
    assert reply.response_metadata["engine"] == "llamacpp" and reply.content

"""`agentkit serve` (issue 15 §1) on the built-in SmolLM2-135M, driven by the clients people use: the
real `openai` package (sync, async, streaming, tools, structured output), LangChain's `ChatOpenAI`,
and an agent whose goal.yaml points at the server. Replies are greedy, so the server must give the
very reply `LocalChatModel` gives in-process; with two LoRAs and many clients at once, each reply
must be the one its adapter gives alone."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from agentkit.models import LocalChatModel
from agentkit.registry import Registry
from agentkit.server import ServeSettings, serve_in_thread
from agentkit.server.runner import wait_healthy

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
KEY = "sk-agentkit-test"
ADAPTERS = ("llcpp-swap-a", "llcpp-swap-b")  # the LoRAs test_llamacpp_engine.py makes, reused if present
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather at a location.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
QUESTION = [{"role": "user", "content": "Name three primary colours."}]


class City(BaseModel):
    """A city."""

    name: str = Field(description="the city's name")
    country: str = Field(description="the country it is in")


@pytest.fixture(scope="module")
def adapters(registry: Registry) -> tuple[str, ...]:
    from tests.integration.test_gguf_lora import random_lora

    for seed, adapter in enumerate(ADAPTERS):
        if adapter not in registry:
            random_lora(registry, adapter, seed)
    return ADAPTERS


@pytest.fixture(scope="module")
def server(registry: Registry, adapters: tuple[str, ...]) -> Any:
    settings = ServeSettings(port=0, api_key=KEY, max_tokens=256, default_max_tokens=32, max_concurrent_generations=24)
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# ---- models ---------------------------------------------------------------------------------------
def test_models_lists_chat_bases_and_adapters_as_their_own_ids(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert BASE in models and all(a in models for a in ADAPTERS)
    assert "minilm-l6" not in models  # embeddings cannot chat
    assert models[ADAPTERS[0]].owned_by == "agentkit" and models[ADAPTERS[0]].model_extra["parent"] == BASE
    assert client.models.retrieve(BASE).id == BASE


# ---- chat: sync, async, streamed -----------------------------------------------------------------
def test_sync_reply_is_the_in_process_reply_with_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=12)
    local = LocalChatModel(max_tokens=12).invoke(QUESTION[0]["content"])
    choice = reply.choices[0]
    assert choice.message.content == local.content
    assert choice.finish_reason == "length" and reply.model == BASE and reply.object == "chat.completion"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        local.usage_metadata["input_tokens"], local.usage_metadata["output_tokens"])  # fmt: skip
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_a_client_that_leaves_before_a_whole_reply_stops_its_generation(server: Any) -> None:
    # A long story with a client that gives up after 0.5 s. The reply is counted as served only when
    # it was not cancelled, so an unchanged count means uvicorn's disconnect reached the engine's
    # cancel (the engines' own stop is tested in test_local_chat.py), and the slot is free at once.
    chat = server.app.state.chat
    served, in_flight = chat.served, chat.gate.in_flight
    body = {"model": BASE, "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
            "max_tokens": 256}  # fmt: skip
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=httpx.Timeout(10, read=0.5))  # fmt: skip
    deadline = time.monotonic() + 10
    while chat.gate.in_flight > in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert chat.gate.in_flight == in_flight and chat.served == served


def test_async_client_gets_the_same_replies(server: Any, client: openai.OpenAI) -> None:
    async def both() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as aclient:
            return await asyncio.gather(
                *(aclient.chat.completions.create(model=BASE, messages=QUESTION, max_completion_tokens=12) for _ in range(2))
            )

    sync = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=12).choices[0].message.content
    assert [r.choices[0].message.content for r in asyncio.run(both())] == [sync, sync]


def test_streamed_reply_equals_the_whole_one_and_ends_with_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=16, stop=["\n\n"])
    chunks = list(client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=16, stop=["\n\n"],
                                                 stream=True, stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_the_raw_stream_is_server_sent_events_ending_in_done(server: Any) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": BASE, "messages": QUESTION, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"
    assert "usage" not in json.loads(events[-2][6:])  # only with stream_options.include_usage


# ---- tools and structured output ------------------------------------------------------------------
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_tool_call_comes_back_with_json_arguments(client: openai.OpenAI, choice: Any) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.chat.completions.create(model=BASE, messages=messages, tools=[WEATHER], tool_choice=choice,
                                           max_tokens=40)  # fmt: skip
    assert reply.choices[0].finish_reason == "tool_calls"
    (call,) = reply.choices[0].message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(json.loads(call.function.arguments)["location"], str)
    # the tool's result goes back as OpenAI clients send it: the assistant turn, then a `tool` message
    follow = messages + [reply.choices[0].message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C."}]  # fmt: skip
    answer = client.chat.completions.create(model=BASE, messages=follow, tools=[WEATHER], tool_choice="none",
                                            max_tokens=16)  # fmt: skip
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls


def test_a_streamed_tool_call_matches_the_whole_one(client: openai.OpenAI) -> None:
    request = {"model": BASE, "messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": [WEATHER],
               "tool_choice": "required", "max_tokens": 40}  # fmt: skip
    whole = client.chat.completions.create(**request).choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(**request, stream=True))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (0, "get_weather", json.loads(whole.function.arguments))]  # fmt: skip
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_response_format_json_schema_parses(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Which city is the Eiffel Tower in?"}]
    parsed = client.chat.completions.parse(model=BASE, messages=messages, response_format=City, max_tokens=48)
    assert isinstance(parsed.choices[0].message.parsed, City)
    loose = client.chat.completions.create(model=BASE, messages=messages, response_format={"type": "json_object"},
                                           max_tokens=48)  # fmt: skip
    assert isinstance(json.loads(loose.choices[0].message.content), dict)


def test_langchain_chat_openai_binds_tools_and_gives_structured_output(server: Any) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=BASE, base_url=server.base_url, api_key=KEY, max_tokens=48, max_retries=0)
    message = llm.bind_tools([WEATHER], tool_choice="get_weather").invoke("What is the weather in Rome?")
    assert message.tool_calls[0]["name"] == "get_weather" and isinstance(message.tool_calls[0]["args"], dict)
    city = llm.with_structured_output(City).invoke("Which city is the Colosseum in?")
    assert isinstance(city, City)
    streamed = "".join(str(c.content) for c in llm.stream("Say hello."))
    assert streamed == llm.invoke("Say hello.").content


# ---- embeddings ---------------------------------------------------------------------------------
def test_embeddings_are_minilm_vectors_with_usage(client: openai.OpenAI) -> None:
    from agentkit.models import LocalEmbeddings

    texts = ["a cat sat on the mat", "stock prices fell"]
    reply = client.embeddings.create(model="minilm-l6", input=texts)  # the client asks for base64
    local = LocalEmbeddings().embed_documents(texts)
    assert [d.index for d in reply.data] == [0, 1] and len(reply.data[0].embedding) == 384
    assert all(abs(a - b) < 1e-6 for d, v in zip(reply.data, local) for a, b in zip(d.embedding, v))
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 4
    floats = client.embeddings.create(model="minilm-l6", input="a cat", encoding_format="float")
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 384


# ---- errors in OpenAI's shape ---------------------------------------------------------------------
def test_without_the_key_401(server: Any) -> None:
    response = httpx.get(f"{server.base_url}/models")
    assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 2}, "n"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"max_tokens": 10_000}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"tools": [{**WEATHER, "function": {**WEATHER["function"], "parameters": {"type": "strin"}}}]},
         "tools[0].function.parameters"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"mystery": 1}, "mystery"),
    ],
)
def test_a_bad_field_is_a_400_that_names_it(client: openai.OpenAI, change: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:  # extra_body: sent as is, over the fields above it
        client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=4, extra_body=change)
    assert err.value.status_code == 400 and err.value.body["param"] == param, err.value.body
    assert err.value.body["type"] == "invalid_request_error"


def test_unknown_model_404_and_malformed_json_400(server: Any, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4)
    assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{server.base_url}/chat/completions", content=b'{"model": ', headers=headers)
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"
    response = httpx.post(f"{server.base_url}/embeddings", json={"model": BASE, "input": "x"}, headers=headers)
    assert response.status_code == 400 and error_of(response)["param"] == "model"


# ---- adapters per request ----------------------------------------------------------------------
def test_two_adapters_and_many_concurrent_clients_each_get_the_reply_they_get_alone(
    server: Any, client: openai.OpenAI, adapters: tuple[str, ...]
) -> None:
    """One loaded base; the adapter travels with each request. 18 requests at once (streamed and not,
    over three models) must each get the reply its model gives when asked alone."""
    names = [BASE, *adapters]
    alone = {n: client.chat.completions.create(model=n, messages=QUESTION, max_tokens=16).choices[0].message.content
             for n in names}  # fmt: skip
    assert len(set(alone.values())) == 3, alone  # the adapters really change the reply

    async def one(aclient: openai.AsyncOpenAI, name: str, stream: bool) -> tuple[str, str]:
        if not stream:
            reply = await aclient.chat.completions.create(model=name, messages=QUESTION, max_tokens=16)
            return name, reply.choices[0].message.content or ""
        parts = []
        async for chunk in await aclient.chat.completions.create(model=name, messages=QUESTION, max_tokens=16,
                                                                 stream=True):  # fmt: skip
            parts.extend(c.delta.content or "" for c in chunk.choices)
        return name, "".join(parts)

    async def together() -> list[tuple[str, str]]:
        clients = [openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) for _ in range(6)]
        try:
            return await asyncio.gather(*(one(clients[i % 6], names[i % 3], stream=i % 2 == 1) for i in range(18)))
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    replies = asyncio.run(together())
    assert all(text == alone[name] for name, text in replies), replies


# ---- an agent whose model is the server ------------------------------------------------------------
def test_a_goal_with_an_openai_provider_runs_through_the_server(server: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from agentkit.agents import Agent

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # ChatOpenAI reads the key here, so goal.yaml holds none
    goal = tmp_path / "goal.yaml"
    goal.write_text(
        "name: served\n"
        "goals: [Add 17 and 25 with the calculator.]\n"
        f"model: {{provider: openai, model: {BASE}, base_url: '{server.base_url}', max_tokens: 64}}\n"
        "tools: [calculator]\n"
        "budgets: {max_steps: 2, max_seconds: 120}\n",
        encoding="utf-8",
    )
    served = server.app.state.chat.served
    result = Agent.from_yaml(goal, runs_dir=tmp_path / "runs").run()
    records = [json.loads(line) for line in result.trace_path.read_text(encoding="utf-8").splitlines()]
    assert records[0]["type"] == "start" and records[0]["model"].startswith("openai:") and records[-1]["type"] == "end"
    steps = [r for r in records if r["type"] == "step"]
    assert steps and all(s["action"] in ("calculator", "finish") for s in steps), records  # calls parsed as tools
    assert server.app.state.chat.served > served  # the agent's calls were answered by the server


# ---- the command, as a real process --------------------------------------------------------------
def test_the_serve_command_binds_loopback_and_takes_the_key_from_the_environment(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "import typer; from agentkit.cli.serve_cmd import serve; typer.run(serve)"
    env = {**os.environ, "AGENTKIT_API_KEY": KEY}
    process = subprocess.Popen([sys.executable, "-c", code, "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, timeout_s=60, output=lambda: process.stdout.read().decode(errors="replace"))
        assert httpx.get(f"{url}/v1/models").status_code == 401
        models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert BASE in {m["id"] for m in models["data"]}
    finally:
        process.terminate()
        process.wait(timeout=15)

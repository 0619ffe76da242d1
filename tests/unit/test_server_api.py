"""The OpenAI-compatible server's HTTP surface with a fake chat model (no weights): what a request
turns into (model, adapter, parameters, messages), the reply and stream shapes, and every error in
OpenAI's shape with the right status and `param`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from agentkit.errors import BadInputError
from agentkit.registry import Registry, SourceInfo
from agentkit.server import ServeSettings, create_app, schemas
from agentkit.server.catalog import ChatTarget

KEY = "sk-unit"
AUTH = {"Authorization": f"Bearer {KEY}"}
USAGE = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
RELEASE = threading.Event()  # "wait" blocks the fake until this is set


class EchoModel(BaseChatModel):
    """Replies `echo: <last message>`; calls the first tool when one is forced; fails on request."""

    target: Any
    params: dict[str, Any]
    seen: Any  # the test's list, shared (a list field would be copied on validation)

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.seen.append((messages, kwargs))
        last = str(messages[-1].content)
        if last == "boom":
            raise RuntimeError("the engine exploded")
        if last == "too long":
            raise BadInputError("The prompt (9000 tokens) does not fit the context.", fix="shorten the history.")
        if last == "wait":
            RELEASE.wait(10)
        metadata = {"finish_reason": "length" if self.params["max_tokens"] < 3 else "stop"}
        if last == "until cancelled":  # an engine that generates until the server cancels it
            metadata["finish_reason"] = "cancelled" if kwargs["cancel"].wait(10) else "length"
        if kwargs.get("tools") and kwargs.get("tool_choice") not in (None, "auto", "none"):
            call = {"name": kwargs["tools"][0]["function"]["name"], "args": {"q": last}, "id": "call_1"}
            return AIMessage(content="", tool_calls=[call], usage_metadata=USAGE, response_metadata=metadata)
        return AIMessage(content=f"echo: {last}", usage_metadata=USAGE, response_metadata=metadata)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
        reply = self._reply(messages, kwargs)
        for call in reply.tool_calls:
            chunk = {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": 0}
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))
        for word in str(reply.content).split(" ") if reply.content else []:
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if str(messages[-1].content) == "fail midway":
                raise RuntimeError("lost the engine midway")
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=USAGE,
                                                         response_metadata=reply.response_metadata))  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of cards only: a chat base, its adapter, an embedding model and an alias."""
    root = tmp_path_factory.mktemp("serve-home")
    registry = Registry(root)
    for entry_id, fields in {
        "tiny-chat": {"kind": "base", "task": "causal_lm"},
        "tiny-lora": {"kind": "adapter", "task": "causal_lm", "base": "tiny-chat", "method": "lora"},
        "tiny-embed": {"kind": "base", "task": "embedding"},
    }.items():
        registry.create_entry(entry_id, lambda stage, f=fields: {**f, "source": SourceInfo(type="hf_folder", ref="x")})
    registry.promote("tiny-lora", "chat-default")
    return root


class Served:
    def __init__(self, home: Path, **settings: Any) -> None:
        self.made: list[tuple[ChatTarget, dict[str, Any]]] = []
        self.seen: list[Any] = []

        def make(target: ChatTarget, params: dict[str, Any]) -> BaseChatModel:
            self.made.append((target, params))
            return EchoModel(target=target, params=params, seen=self.seen)

        options = {"home": str(home), "api_key": KEY, "max_tokens": 64, "default_max_tokens": 16, **settings}
        self.app = create_app(ServeSettings(**options), chat_model=make)
        self.client = TestClient(self.app, raise_server_exceptions=False, base_url="http://127.0.0.1:8000")

    def chat(self, **body: Any) -> Any:
        return self.client.post("/v1/chat/completions", json={"model": "tiny-chat", **body}, headers=AUTH)


@pytest.fixture
def served(home: Path) -> Served:
    return Served(home)


def hi(text: str = "hi") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# ---- models and what a request runs --------------------------------------------------------------
def test_models_lists_bases_adapters_and_aliases_that_chat(served: Served) -> None:
    data = {m["id"]: m for m in served.client.get("/v1/models", headers=AUTH).json()["data"]}
    assert {"tiny-chat", "tiny-lora", "chat-default"} <= set(data) and "tiny-embed" not in data
    assert data["tiny-lora"] | {"created": 0} == {"id": "tiny-lora", "object": "model", "created": 0,
                                                   "owned_by": "agentkit", "root": "tiny-lora", "parent": "tiny-chat"}  # fmt: skip
    assert data["chat-default"]["root"] == "tiny-lora"
    assert served.client.get("/v1/models/tiny-lora", headers=AUTH).json()["id"] == "tiny-lora"
    assert error_of(served.client.get("/v1/models/nope", headers=AUTH), 404)["code"] == "model_not_found"


@pytest.mark.parametrize(("model", "adapter"), [("tiny-chat", None), ("tiny-lora", "tiny-lora"),
                                                ("chat-default", "tiny-lora")])  # fmt: skip
def test_an_adapter_or_its_alias_runs_on_its_base(served: Served, model: str, adapter: str | None) -> None:
    reply = served.chat(model=model, messages=hi()).json()
    assert reply["model"] == model
    target, _ = served.made[-1]
    assert (target.base, target.adapter) == ("tiny-chat", adapter)


def test_generation_parameters_reach_the_chat_model(served: Served) -> None:
    served.chat(messages=hi(), temperature=0.7, top_p=0.9, seed=3, stop="END", max_completion_tokens=20, max_tokens=5)
    _, params = served.made[-1]
    assert params | {"timeout": None} == {"temperature": 0.7, "top_p": 0.9, "seed": 3, "stop": ["END"],
                                          "max_tokens": 20, "timeout": None}  # fmt: skip
    served.chat(messages=hi())
    assert served.made[-1][1]["max_tokens"] == 16  # default_max_tokens


# ---- replies ------------------------------------------------------------------------------------
def test_a_reply_has_openai_fields_usage_and_finish_reason(served: Served) -> None:
    reply = served.chat(messages=hi(), max_tokens=2).json()
    assert reply["id"].startswith("chatcmpl-") and reply["object"] == "chat.completion"
    (choice,) = reply["choices"]
    assert choice["message"]["content"] == "echo: hi" and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "length"
    assert reply["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                              "prompt_tokens_details": {"cached_tokens": 0}}  # fmt: skip


def test_tool_calls_go_in_as_langchain_calls_and_come_back_with_json_string_arguments(served: Served) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "strict": True,
                                             "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}  # fmt: skip
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "find "}, {"type": "text", "text": "cats"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "cats"}'}}]},
        {"role": "tool", "tool_call_id": "c9", "content": "3 cats"},
        {"role": "user", "content": "again"},
    ]  # fmt: skip
    reply = served.chat(messages=messages, tools=[tool], tool_choice="required").json()
    seen, kwargs = served.seen[-1]
    assert isinstance(seen[0], SystemMessage) and seen[1].content == "find cats"
    assert seen[2].tool_calls == [{"name": "lookup", "args": {"q": "cats"}, "id": "c9", "type": "tool_call"}]
    assert isinstance(seen[3], ToolMessage) and seen[3].name == "lookup"  # named after the call it answers
    assert kwargs["tool_choice"] == "any" and "strict" not in kwargs["tools"][0]["function"]
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "again"}'}}]  # fmt: skip


def test_response_format_reaches_the_chat_model(served: Served) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    served.chat(messages=hi(), response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert served.seen[-1][1]["response_format"] == {"type": "json_schema", "json_schema": {"schema": schema}}
    served.chat(messages=hi(), response_format={"type": "json_object"})
    assert served.seen[-1][1]["response_format"] == {"type": "json_object"}
    served.chat(messages=hi(), response_format={"type": "text"})
    assert "response_format" not in served.seen[-1][1]


# ---- streams ----------------------------------------------------------------------------------
def events(response: Any) -> list[Any]:
    lines = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]", lines
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_a_stream_is_role_then_deltas_then_finish_then_usage(served: Served) -> None:
    response = served.chat(messages=hi("a b"), stream=True, stream_options={"include_usage": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = events(response)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: a b "
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 10
    assert all(c["usage"] is None for c in chunks[:-1]) and len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in events(served.chat(messages=hi(), stream=True)))


def test_a_streamed_tool_call_is_one_indexed_delta(served: Served) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    chunks = events(served.chat(messages=hi(), tools=[tool], tool_choice={"type": "function",
                                                                           "function": {"name": "lookup"}}, stream=True))  # fmt: skip
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls == [{"index": 0, "id": "call_1", "type": "function",
                      "function": {"name": "lookup", "arguments": '{"q": "hi"}'}}]  # fmt: skip
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_stream_that_fails_first_gets_a_status_and_one_that_fails_midway_an_error_event(served: Served) -> None:
    assert error_of(served.chat(messages=hi("too long"), stream=True), 400)["message"].startswith("The prompt")
    response = served.chat(messages=hi("fail midway"), stream=True)
    assert response.status_code == 200  # the headers had gone: the error is the last event
    lines = [line for line in response.text.split("\n") if line]
    last = json.loads(lines[-1].removeprefix("data: "))
    assert "lost the engine midway" in last["error"]["message"] and last["error"]["type"] == "server_error"
    assert json.loads(lines[1].removeprefix("data: "))["choices"][0]["delta"] == {"content": "echo: "}


# ---- errors ---------------------------------------------------------------------------------------
def test_without_the_key_or_with_a_wrong_one_401(served: Served) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        response = served.client.post("/v1/chat/completions", json={"model": "tiny-chat", "messages": hi()},
                                      headers=headers)  # fmt: skip
        assert error_of(response, 401)["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
    assert served.client.get("/health").status_code == 200  # liveness needs no key


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"n": 2}, "n", "invalid_value"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content[0].type", "invalid_value"),
        ({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
         "messages[0].tool_calls[0].function.arguments", "invalid_value"),
        ({"messages": []}, "messages", "invalid_value"),
        ({"max_tokens": 65}, "max_tokens", "invalid_value"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_value"),
        ({"top_p": 0}, "top_p", "invalid_value"),
        ({"seed": 2**64}, "seed", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"presence_penalty": 0.5}, "presence_penalty", "invalid_value"),
        ({"functions": []}, "functions", "unknown_parameter"),
        ({"tool_choice": "required"}, "tool_choice", None),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                                  "properties": []}}}]},
         "tools[0].function.parameters", "invalid_schema"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
         "tools[0].function", None),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}},
         "response_format.json_schema.schema", "invalid_schema"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
        ({"model": "tiny-embed"}, "model", "model_not_chat"),
    ],
)
def test_a_bad_request_is_a_400_that_names_the_field(served: Served, body: dict[str, Any], param: str,
                                                      code: str | None) -> None:  # fmt: skip
    error = error_of(served.chat(**{"messages": hi(), **body}), 400)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error"), error
    assert not served.made  # refused before any model was made


def test_unknown_model_404_engine_failure_500_bad_input_from_the_engine_400(served: Served) -> None:
    for model in ("no-such-model", "../etc", "UPPER"):
        error = error_of(served.chat(model=model, messages=hi()), 404)
        assert (error["code"], error["param"]) == ("model_not_found", "model")
    error = error_of(served.chat(messages=hi("boom")), 500)
    assert error["type"] == "server_error" and "RuntimeError: the engine exploded" in error["message"]
    assert "Fix: shorten the history." in error_of(served.chat(messages=hi("too long")), 400)["message"]


def test_a_body_that_is_not_json_or_too_large_or_not_an_object(home: Path) -> None:
    served = Served(home, max_body_bytes=300)
    post = served.client.post
    assert error_of(post("/v1/chat/completions", content=b"{nope", headers=AUTH), 400)["code"] == "invalid_json"
    assert "JSON object" in error_of(post("/v1/chat/completions", json=[1], headers=AUTH), 400)["message"]
    big = {"model": "tiny-chat", "messages": hi("x" * 400)}
    assert error_of(post("/v1/chat/completions", json=big, headers=AUTH), 413)["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"model": "tiny-chat", "messages": [{"role": "user", "content": "'
        yield b"x" * 400
        yield b'"}]}'

    assert error_of(post("/v1/chat/completions", content=chunked(), headers=AUTH), 413)["code"] == "request_too_large"


def test_unknown_paths_and_methods_answer_in_the_same_shape(served: Served) -> None:
    assert error_of(served.client.get("/v1/nope", headers=AUTH), 404)["code"] == "unknown_url"
    assert error_of(served.client.get("/v1/chat/completions", headers=AUTH), 405)["message"].startswith("GET")


def test_past_max_concurrent_generations_429_and_the_slot_frees_when_done(home: Path) -> None:
    served = Served(home, max_concurrent_generations=1)
    RELEASE.clear()
    first: list[Any] = []
    worker = threading.Thread(target=lambda: first.append(served.chat(messages=hi("wait"))))
    worker.start()
    gate = served.app.state.chat.gate
    deadline = time.monotonic() + 10
    while gate.in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    response = served.chat(messages=hi())
    assert error_of(response, 429)["code"] == "too_many_concurrent_generations"
    assert response.headers["retry-after"] == "1"
    RELEASE.set()
    worker.join(10)
    assert first[0].status_code == 200 and gate.in_flight == 0
    assert served.chat(messages=hi()).status_code == 200


def test_a_whole_reply_whose_client_left_is_cancelled_and_frees_its_slot_fake_model(home: Path) -> None:
    # The fake generates until its `cancel` event is set; the client leaves after 0.3 s. What is
    # under test is the server's bookkeeping, not the model (tests/integration: a real client leaves).
    served = Served(home, max_concurrent_generations=1)
    chat = served.app.state.chat

    async def leaves() -> None:
        await asyncio.sleep(0.3)

    body = schemas.parse(schemas.ChatCompletionRequest, {"model": "tiny-chat", "messages": hi("until cancelled")})
    started = time.monotonic()
    reply = asyncio.run(chat.complete(body, leaves))
    assert reply["choices"][0]["finish_reason"] == "length"  # cut short ("cancelled"), as a budget cuts
    assert served.seen[-1][1]["cancel"].is_set() and time.monotonic() - started < 5
    assert chat.gate.in_flight == 0 and chat.served == 0

    async def stays() -> None:
        await asyncio.Event().wait()

    # A client that stays is never cancelled, and its reply is counted.
    RELEASE.set()
    body = schemas.parse(schemas.ChatCompletionRequest, {"model": "tiny-chat", "messages": hi("wait")})
    reply = asyncio.run(chat.complete(body, stays))
    assert reply["choices"][0]["message"]["content"] == "echo: wait" and chat.served == 1
    assert not served.seen[-1][1]["cancel"].is_set()


def test_a_client_that_asks_again_on_done_finds_its_slot_free(home: Path) -> None:
    # The slot is given back before [DONE] is sent, not when the generation thread ends after it.
    served = Served(home, max_concurrent_generations=1)
    for i in range(20):
        with served.client.stream("POST", "/v1/chat/completions", headers=AUTH,
                                  json={"model": "tiny-chat", "messages": hi(f"n{i}"), "stream": True}) as reply:  # fmt: skip
            assert reply.status_code == 200, reply.read()
            assert "data: [DONE]" in list(reply.iter_lines())
    assert served.app.state.chat.gate.in_flight == 0


# ---- embeddings (errors only: the vectors are checked on minilm-l6 in tests/integration) ----------
@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "tiny-chat", "input": "x"}, 400, "model"),
        ({"model": "nope", "input": "x"}, 404, "model"),
        ({"model": "tiny-embed", "input": [1, 2, 3]}, 400, "input"),
        ({"model": "tiny-embed", "input": []}, 400, "input"),
        ({"model": "tiny-embed", "input": ["a"] * 3}, 400, "input"),
        ({"model": "tiny-embed", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ],
)
def test_embedding_requests_refused_with_the_field(home: Path, body: dict[str, Any], status: int, param: str) -> None:
    served = Served(home, max_embedding_inputs=2)
    assert error_of(served.client.post("/v1/embeddings", json=body, headers=AUTH), status)["param"] == param

"""POST /v1/chat/completions: a validated request becomes one `LocalChatModel` call, run in the
server's generation pool so the event loop never waits on a model.

Concurrency: each request builds its own `LocalChatModel(model=base, adapter=...)` and the adapter
travels with the call (chat_model -> runtime.generate -> models/adapters), never through shared
state: llama.cpp gets a per-request `lora` list, transformers switches under its lock. So two
requests in flight cannot see each other's adapter. At most `max_concurrent_generations` run or
wait on an engine at once; one more gets 429 at once instead of a socket held open.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from agentkit.errors import BadInputError
from agentkit.registry import Registry
from agentkit.server import chat_format, schemas
from agentkit.server.catalog import ChatTarget, chat_target
from agentkit.server.errors import ApiError, bad_request, from_exception
from agentkit.server.settings import ServeSettings

# (what runs, generation parameters) -> a chat model; tests pass a fake, the server LocalChatModel.
ChatModelFactory = Callable[[ChatTarget, dict[str, Any]], BaseChatModel]


def local_chat_model(settings: ServeSettings) -> ChatModelFactory:
    def make(target: ChatTarget, params: dict[str, Any]) -> BaseChatModel:
        from agentkit.models.chat_model import LocalChatModel

        return LocalChatModel(model=target.base, adapter=target.adapter, engine=settings.engine, home=settings.home,
                              **params)  # fmt: skip

    return make


class GenerationGate:
    """Counts generations in flight; past the limit, ApiError 429. Released from worker threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.in_flight >= self.limit:
                raise ApiError(
                    429,
                    f"Too many concurrent generations: {self.limit} are running, the limit of this server "
                    "(max_concurrent_generations). Fix: retry after one finishes.",
                    type="rate_limit_error", code="too_many_concurrent_generations",
                )
            self.in_flight += 1

    def leave(self, *_: Any) -> None:
        with self._lock:
            self.in_flight -= 1


@dataclass
class Prepared:
    """A request turned into what a chat model takes."""

    target: ChatTarget
    messages: list[BaseMessage]
    params: dict[str, Any]  # LocalChatModel fields: temperature, max_tokens, stop, ...
    options: dict[str, Any]  # per-call options: tools, tool_choice, response_format


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class _Once:
    """`fn()` the first time it is called, nothing after: a generation slot is given back once."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn, self._lock, self._done = fn, threading.Lock(), False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._fn()


class ChatService:
    def __init__(self, settings: ServeSettings, registry: Registry, pool: ThreadPoolExecutor,
                 make_model: ChatModelFactory) -> None:  # fmt: skip
        self.settings = settings
        self.registry = registry
        self.pool = pool
        self.make_model = make_model
        self.gate = GenerationGate(settings.max_concurrent_generations)
        self.served = 0  # completions returned whole (streams included); tests read it

    # ---- request -> call ------------------------------------------------------------------------
    async def prepare(self, request: schemas.ChatCompletionRequest) -> Prepared:
        budget = request.budget or self.settings.default_max_tokens
        if budget > self.settings.max_tokens:
            param = request.budget_param
            raise bad_request(f"Invalid {param}: {budget} is above this server's cap of {self.settings.max_tokens} "
                              f"tokens. Fix: ask for {self.settings.max_tokens} or fewer.", param, code="invalid_value")  # fmt: skip
        options = _options(request)
        messages = chat_format.to_langchain(request.messages)
        # Off the event loop: a built-in is converted into the registry on its first use (~20 s).
        target = await asyncio.to_thread(chat_target, self.registry, request.model)
        params: dict[str, Any] = {"max_tokens": budget, "timeout": self.settings.generation_timeout_s}
        for name, value in (("temperature", request.temperature), ("top_p", request.top_p),
                            ("seed", request.seed), ("stop", request.stops or None)):  # fmt: skip
            if value is not None:
                params[name] = value
        return Prepared(target, messages, params, options)

    def _submit(self, fn: Callable[..., Any], *args: Any, leave: Callable[[], None] | None = None,
                **kwargs: Any) -> Future[Any]:  # fmt: skip
        """`fn` on the generation pool once the gate admits it (else ApiError 429). The slot is given
        back when the thread is done, even if the client left, or earlier by `leave` (see `stream`)."""
        self.gate.enter()
        release = _Once(self.gate.leave) if leave is None else leave
        try:
            future = self.pool.submit(fn, *args, **kwargs)
        except BaseException:
            release()
            raise
        future.add_done_callback(lambda _: release())
        return future

    # ---- the reply, whole ----------------------------------------------------------------------
    async def complete(self, request: schemas.ChatCompletionRequest,
                       client_gone: Callable[[], Awaitable[Any]] | None = None) -> dict[str, Any]:  # fmt: skip
        """The reply in one body. `client_gone()` returns when the client disconnects (see
        app.client_gone); if that comes first, the engine stops at its next token, so a reply nobody
        will read neither holds a slot nor keeps the engine busy."""
        call = await self.prepare(request)
        cancel = threading.Event()
        future = self._submit(self.make_model(call.target, call.params).invoke, call.messages, **call.options,
                              cancel=cancel)  # fmt: skip
        reply = asyncio.wrap_future(future)
        gone = asyncio.ensure_future(client_gone()) if client_gone is not None else None
        try:
            if gone is not None:
                await asyncio.wait({reply, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not reply.done():
                    cancel.set()  # the reply still comes back, cut short, and the server drops it
            message = await reply
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI-shaped reply
            raise from_exception(exc, failed="The engine") from None
        finally:
            if gone is not None:
                gone.cancel()
        if not isinstance(message, AIMessage):
            raise ApiError(500, f"The chat model returned {type(message).__name__}, not an AIMessage.", type="server_error")
        self.served += int(not cancel.is_set())
        return chat_format.completion(message, model=request.model, id=chat_format.completion_id(),
                                      created=int(time.time()))  # fmt: skip

    # ---- the reply, streamed -------------------------------------------------------------------
    async def stream(self, request: schemas.ChatCompletionRequest) -> AsyncIterator[str]:
        """Server-sent events. The first chunk is awaited before returning, so a request that fails
        before generating (a bad tool_choice, a prompt over the context) still gets its status code."""
        call = await self.prepare(request)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        writer = chat_format.ChunkWriter(model=request.model, include_usage=include_usage)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: the server is shutting down
                stop.set()

        # The slot is given back before the last event is queued: a client that sends its next
        # request as soon as it reads [DONE] must find it free (the thread's own end comes later).
        release = _Once(self.gate.leave)

        def work(llm: BaseChatModel) -> None:
            chunks = llm.stream(call.messages, **call.options)
            try:
                for chunk in chunks:
                    put(chunk)
                    if stop.is_set():  # the client left: closing the generator stops the engine
                        break
            except BaseException as exc:  # noqa: BLE001 - handed to the event loop
                put(_Failed(exc))
            finally:
                chunks.close()
                release()
                put(_END)

        self._submit(work, self.make_model(call.target, call.params), leave=release)
        try:
            first = await queue.get()
        except BaseException:
            stop.set()
            raise
        if isinstance(first, _Failed):
            raise from_exception(first.exc, failed="The engine")
        return self._events(writer, first, queue, stop)

    async def _events(self, writer: chat_format.ChunkWriter, first: Any, queue: asyncio.Queue[Any],
                      stop: threading.Event) -> AsyncIterator[str]:  # fmt: skip
        try:
            yield _event(writer.start())
            item = first
            while item is not _END:
                if isinstance(item, _Failed):
                    # Headers are sent: the error goes in the stream, as OpenAI does (the client raises it).
                    yield _event(from_exception(item.exc, failed="The engine").body())
                    return
                for body in writer.add(item):
                    yield _event(body)
                item = await queue.get()
            for body in writer.end():
                yield _event(body)
            yield "data: [DONE]\n\n"
            self.served += 1
        finally:
            stop.set()


def _event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


# ---- tools and response_format ------------------------------------------------------------------
def _options(request: schemas.ChatCompletionRequest) -> dict[str, Any]:
    """tools / tool_choice / response_format as LocalChatModel takes them, each checked here so that
    a bad one is a 400 naming it before any model is loaded."""
    from agentkit.models.tool_calls import normalise_tool_choice, openai_tool

    options: dict[str, Any] = {}
    tools = []
    for index, tool in enumerate(request.tools or []):
        spec = tool.model_dump(exclude_none=True)
        spec["function"].pop("strict", None)  # grammars always hold the schema; the flag adds nothing
        _check_schema(spec["function"].get("parameters"), f"tools[{index}].function.parameters")
        try:
            tools.append(openai_tool(spec, index))
        except BadInputError as exc:
            raise from_exception(exc, param=f"tools[{index}].function") from None
    if tools:
        options["tools"] = tools
    if request.tool_choice is not None:
        choice = request.tool_choice if isinstance(request.tool_choice, str) else request.tool_choice.model_dump()
        try:
            options["tool_choice"] = normalise_tool_choice(choice, tools)
        except BadInputError as exc:
            raise from_exception(exc, param="tool_choice") from None
    fmt = request.response_format
    if isinstance(fmt, schemas.JsonObjectFormat):
        options["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, schemas.JsonSchemaFormat):
        _check_schema(fmt.json_schema.schema_, "response_format.json_schema.schema")
        options["response_format"] = {"type": "json_schema", "json_schema": {"schema": fmt.json_schema.schema_}}
    return options


def _check_schema(schema: dict[str, Any] | None, param: str) -> None:
    """A JSON Schema that is not one (`{"type": "strin"}`) is the client's error: 400, not a grammar failure."""
    if schema is None:
        return
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise bad_request(f"Invalid {param}: not a JSON Schema ({exc.message}, at {where}).", param,
                          code="invalid_schema") from None  # fmt: skip

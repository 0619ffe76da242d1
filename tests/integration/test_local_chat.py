"""LocalChatModel behaviour beyond the standard suite, on the real built-in model."""

from __future__ import annotations

import threading
import time

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from agentkit.errors import BadInputError
from agentkit.models import LocalChatModel
from agentkit.tools.calculator import calculator

pytestmark = pytest.mark.integration


class Person(BaseModel):
    """A person."""

    name: str = Field(description="full name")
    age: int = Field(description="age in years")
    hobbies: list[str] = Field(description="a few hobbies")


def test_stop_sequence_cuts_text_in_invoke_and_stream() -> None:
    llm = LocalChatModel(max_new_tokens=48)
    free = llm.invoke("Count from 1 to 10, separated by commas.").content
    assert "4" in free  # the model does count; the stop below must cut before it
    cut = llm.invoke("Count from 1 to 10, separated by commas.", stop=["4"])
    assert "4" not in cut.content and cut.response_metadata["finish_reason"] == "stop"
    streamed = "".join(c.content for c in llm.stream("Count from 1 to 10, separated by commas.", stop=["4"]))
    assert streamed == cut.content


def test_seed_makes_sampling_repeatable() -> None:
    llm = LocalChatModel(max_new_tokens=24, temperature=1.0, top_p=0.95)
    first = llm.invoke("Name a color.", seed=7).content
    assert llm.invoke("Name a color.", seed=7).content == first
    others = {llm.invoke("Name a color.", seed=s).content for s in (1, 2, 3)}
    assert len(others | {first}) > 1  # different seeds do sample differently


def test_structured_output_parses_even_when_the_budget_is_tight() -> None:
    # 32 tokens cannot hold a free-running answer; the wrap-up bias closes the JSON in time.
    for budget in (32, 48):
        person = LocalChatModel(max_new_tokens=budget).with_structured_output(Person).invoke(
            "Describe Ada Lovelace."
        )
        assert isinstance(person, Person)
    with pytest.raises(BadInputError, match="too small for the shortest reply"):
        LocalChatModel(max_new_tokens=12).with_structured_output(Person).invoke("Describe Ada Lovelace.")


def test_named_tool_choice_and_calculator_round_trip() -> None:
    llm = LocalChatModel(max_new_tokens=48)
    msg = llm.bind_tools([calculator], tool_choice="calculator").invoke("What is 23 * 19?")
    call = msg.tool_calls[0]
    assert call["name"] == "calculator" and set(call["args"]) == {"expression"}
    result = calculator.invoke(call)
    answer = llm.invoke([HumanMessage("What is 23 * 19?"), msg, result])
    assert answer.content and not answer.tool_calls


def test_malformed_schema_fails_before_generation() -> None:
    bad = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}
    with pytest.raises(BadInputError, match="grammar"):
        LocalChatModel().bind_tools([bad], tool_choice="f").invoke("hi")


def test_concurrent_calls_are_serialised_safely() -> None:
    llm = LocalChatModel(max_new_tokens=12)
    expected = llm.invoke("Say hello.").content
    results: list[str] = []

    def worker() -> None:
        results.append(llm.invoke("Say hello.").content)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 3


def test_adapter_seam_checks_the_registry() -> None:
    with pytest.raises(BadInputError, match="Unknown model id 'no-such-adapter'"):
        LocalChatModel(adapter="no-such-adapter").invoke("hi")
    with pytest.raises(BadInputError, match="not an adapter"):
        LocalChatModel(adapter="minilm-l6").invoke("hi")


def test_auto_tool_choice_calls_then_answers_instead_of_looping() -> None:
    from langchain_core.tools import tool

    @tool
    def get_weather(location: str) -> str:
        """Get the weather at a location."""
        return "It's sunny."

    llm = LocalChatModel(max_new_tokens=48).bind_tools([get_weather])  # tool_choice="auto"
    history = [HumanMessage("What is the weather in San Francisco, CA?")]
    first = llm.invoke(history)
    assert [c["name"] for c in first.tool_calls] == ["get_weather"]
    history += [first, get_weather.invoke(first.tool_calls[0])]
    # The model, having read the result, scores another identical call highest; that can only
    # loop, so the reply is text (in invoke and in stream alike).
    second = llm.invoke(history)
    assert not second.tool_calls and second.content
    streamed = None
    for chunk in llm.stream(history):
        streamed = chunk if streamed is None else streamed + chunk
    assert not streamed.tool_calls and streamed.content == second.content
    assert not LocalChatModel(max_new_tokens=24).bind_tools([get_weather]).invoke("Hello!").tool_calls


@pytest.mark.parametrize("engine", ["transformers", "llamacpp"])
def test_cancel_from_another_thread_stops_a_whole_reply(engine: str) -> None:
    llm = LocalChatModel(engine=engine, max_new_tokens=512)
    llm.invoke("Hi", max_new_tokens=2)  # load first: the cancel is for generation
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.perf_counter()
    reply = llm.invoke("Write a very long story about a dragon.", cancel=cancel)
    seconds = time.perf_counter() - started
    timer.cancel()
    assert reply.response_metadata["finish_reason"] == "cancelled", reply.response_metadata
    assert 0 < reply.usage_metadata["output_tokens"] < 512 and seconds < 5
    # An event that is never set changes nothing.
    assert llm.invoke("Name a color.", max_new_tokens=8, cancel=threading.Event()).content == \
        llm.invoke("Name a color.", max_new_tokens=8).content

"""Tool-call SFT rows: sharegpt function_call/observation and openai tool_calls/tool turns train on
exactly the tokens `LocalChatModel` feeds the model at inference, with the loss on the calls.

The tokenizer is a tiny byte-level one built here with SmolLM2's ChatML template: what is under
test is the rendering, not a model's weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from agentkit.errors import BadInputError
from agentkit.tuning.data import DataConfig, load_dataset
from agentkit.tuning.tokenize import IGNORE, encode_chat

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ADD = {"name": "add", "description": "Add two numbers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}
GLAIVE_ROW = {
    "conversations": [
        {"from": "human", "value": "What is 2 + 3?"},
        {"from": "function_call", "value": '{"name": "add", "arguments": {"a": 2, "b": 3}}'},
        {"from": "observation", "value": '{"result": 5}'},
        {"from": "gpt", "value": "2 + 3 = 5."},
    ],
    "tools": json.dumps([ADD]),  # glaive stores the schemas as a JSON string
}
OPENAI_ROW = {
    "messages": [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "x1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
        {"role": "tool", "tool_call_id": "x1", "content": '{"result": 5}'},
        {"role": "assistant", "content": "2 + 3 = 5."},
    ],
    "tools": [{"type": "function", "function": ADD}],
}


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", bos_token="<|im_start|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def examples(tmp_path: Path, rows: list[dict], fmt: str) -> list:
    return load_dataset(DataConfig(train=str(write(tmp_path, rows)), format=fmt, eval_fraction=0)).train


def inference_prompt(monkeypatch: pytest.MonkeyPatch, tokenizer, messages: list, tools: list) -> list[int]:
    """The prompt ids LocalChatModel builds for a call with `tools` bound, tool_choice="any".

    The real `_prepare` and `LoadedModel.encode_chat` run; only the weights (never used to build a
    prompt) and the grammar compiler are fake.
    """
    from agentkit.models import chat_model
    from agentkit.models.runtime import LoadedModel

    fake_loaded = SimpleNamespace(tokenizer=tokenizer, model_id="fake-model",
                                  grammar=SimpleNamespace(tool_calls=lambda *a: None))
    fake_loaded.encode_chat = lambda chat: LoadedModel.encode_chat(fake_loaded, chat)
    monkeypatch.setattr(chat_model.LocalChatModel, "load_runtime", lambda self, *a, **k: fake_loaded)
    bound = chat_model.LocalChatModel(engine="transformers").bind_tools(tools, tool_choice="any")
    return bound.bound._prepare(messages, None, dict(bound.kwargs)).prompt


@pytest.mark.parametrize("row, fmt", [(GLAIVE_ROW, "sharegpt"), (OPENAI_ROW, "openai")])
def test_training_prompt_equals_inference_prompt_fake_tokenizer(tmp_path, monkeypatch, tokenizer, row, fmt) -> None:
    (example,) = examples(tmp_path, [row], fmt)
    encoded = encode_chat(tokenizer, example, max_length=4096)
    ids, labels = encoded["input_ids"], encoded["labels"]

    # Inference, step 1: the user asks; the model must write the call.
    first = inference_prompt(monkeypatch, tokenizer, [HumanMessage("What is 2 + 3?")], [ADD])
    assert ids[: len(first)] == first
    call_text = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    call_ids = tokenizer(call_text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids[len(first): len(first) + len(call_ids)] == call_ids
    # The loss covers the call and its end-of-turn token, nothing of the prompt.
    assert labels[: len(first)] == [IGNORE] * len(first)
    assert labels[len(first): len(first) + len(call_ids)] == call_ids

    # Inference, step 2: the tool answered; the model must write the final answer.
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "c0", "type": "tool_call"}
    history = [HumanMessage("What is 2 + 3?"), AIMessage("", tool_calls=[call]),
               ToolMessage('{"result": 5}', name="add", tool_call_id="c0")]
    second = inference_prompt(monkeypatch, tokenizer, history, [ADD])
    assert ids[: len(second)] == second
    answer = tokenizer("2 + 3 = 5.<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids[len(second): len(second) + len(answer)] == answer == labels[len(second): len(second) + len(answer)]
    # The tool's result is input, not something to learn.
    # (+1: the template's "\n" after <|im_end|> is rendered with the assistant turn and learnt with it)
    result_span = range(len(first) + len(call_ids) + 1, len(second))
    assert len(result_span) > 20
    assert all(labels[i] == IGNORE for i in result_span)


def test_sharegpt_and_openai_rows_render_alike(tmp_path) -> None:
    (a,) = examples(tmp_path, [GLAIVE_ROW], "sharegpt")
    (b,) = examples(tmp_path, [OPENAI_ROW], "openai")
    assert a.messages == b.messages
    assert [m["role"] for m in a.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert '"name": "add"' in a.messages[0]["content"] and "<tool_response>\nadd: " in a.messages[3]["content"]


def test_tools_without_calls_still_render_the_tools_prompt(tmp_path) -> None:
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
           "tools": json.dumps([ADD])}
    (example,) = examples(tmp_path, [row], "sharegpt")
    assert example.messages[0]["role"] == "system" and "<tools>" in example.messages[0]["content"]
    empty = {"conversations": row["conversations"], "tools": "[]"}
    (plain,) = examples(tmp_path, [empty], "sharegpt")
    assert plain.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_parallel_calls_and_results(tmp_path) -> None:
    mul = {**ADD, "name": "mul"}
    row = {"conversations": [
        {"from": "human", "value": "2+3 and 2*3?"},
        {"from": "function_call", "value": [{"name": "add", "arguments": {"a": 2, "b": 3}},
                                            {"name": "mul", "arguments": {"a": 2, "b": 3}}]},
        {"from": "observation", "value": "5"}, {"from": "observation", "value": "6"},
        {"from": "gpt", "value": "5 and 6."}], "tools": [ADD, mul]}
    (example,) = examples(tmp_path, [row], "sharegpt")
    assert example.messages[2]["content"].count("<tool_call>") == 2
    assert "add: 5" in example.messages[3]["content"] and "mul: 6" in example.messages[3]["content"]


@pytest.mark.parametrize("turns, tools, field, contains", [
    ([{"from": "human", "value": "q"}, {"from": "function_call", "value": '{"name": "sub", "arguments": {}}'}],
     [ADD], "conversations[1].value", "'sub'"),
    ([{"from": "human", "value": "q"}, {"from": "function_call", "value": '{"name": "add", "arguments": [1]}'}],
     [ADD], "conversations[1].value.arguments", "must be an object"),
    ([{"from": "human", "value": "q"}, {"from": "function_call", "value": "{oops"}],
     [ADD], "conversations[1].value", "not valid JSON"),
    ([{"from": "human", "value": "q"}, {"from": "function_call", "value": '{"name": "add", "arguments": "{a: 1"}'}],
     [ADD], "conversations[1].value.arguments", "not valid JSON"),
    ([{"from": "human", "value": "q"}, {"from": "observation", "value": "5"}, {"from": "gpt", "value": "a"}],
     [ADD], "conversations[1].value", "no tool call before it"),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "[{bad", "tools", "not valid JSON"),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], [{"name": "x", "parameters": {"type": "array"}}],
     "tools[0]", "malformed"),
])
def test_bad_tool_rows_name_row_and_field(tmp_path, turns, tools, field, contains) -> None:
    path = write(tmp_path, [{"conversations": turns, "tools": tools}])
    with pytest.raises(BadInputError) as info:
        load_dataset(DataConfig(train=str(path), format="sharegpt", eval_fraction=0))
    message = str(info.value)
    assert str(path) in message and "line 1" in message and repr(field) in message, message
    assert contains in message and info.value.fix


def test_openai_tool_message_must_answer_a_call_it_names(tmp_path) -> None:
    row = {**OPENAI_ROW, "messages": [*OPENAI_ROW["messages"][:2],
                                      {"role": "tool", "tool_call_id": "nope", "content": "5"},
                                      OPENAI_ROW["messages"][3]]}
    with pytest.raises(BadInputError, match=r"messages\[2\].content.*'nope'"):
        examples(tmp_path, [row], "openai")


# ---------------------------------------------------------------- examples/agent_lora/build_data.py


def _build_data():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "agent_lora" / "build_data.py"
    spec = importlib.util.spec_from_file_location("agent_lora_build_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_glaive_conversion_trains_on_what_the_glaive_row_renders_to(tmp_path) -> None:
    build_data = _build_data()
    row = build_data.glaive_row(GLAIVE_ROW, "record 0")
    assert row["messages"][1]["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    assert row["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"result": 5}'}
    (converted,) = examples(tmp_path, [row], "openai")
    (original,) = examples(tmp_path, [GLAIVE_ROW], "sharegpt")
    assert converted.messages == original.messages


def test_build_puts_call_rows_first_and_repeats_traces() -> None:
    build_data = _build_data()
    chat_only = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}], "tools": "[]"}
    rows = build_data.build([chat_only, GLAIVE_ROW], [OPENAI_ROW], glaive_rows=1, trace_repeats=2)
    assert len(rows) == 3 and build_data.has_call(rows[0]) and rows[1:] == [OPENAI_ROW, OPENAI_ROW]
    with pytest.raises(ValueError, match="observation with no function_call"):
        build_data.glaive_row({"conversations": [{"from": "observation", "value": "5"}]}, "record 7")

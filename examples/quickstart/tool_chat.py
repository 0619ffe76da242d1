"""The quickstart: the built-in 135M model chooses a tool, we run it, the model answers with it.

Run with `make demo` (or `python examples/quickstart/tool_chat.py "What is 23 * 19?"`).
"""

from __future__ import annotations

import sys
import time

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from agentkit.models import LocalChatModel
from agentkit.registry import Registry
from agentkit.tools.calculator import calculator


@tool
def word_count(text: str) -> str:
    """Count the words in a piece of text."""
    return str(len(text.split()))


def main(question: str) -> int:
    tools = {t.name: t for t in (calculator, word_count)}
    llm = LocalChatModel(max_new_tokens=64)
    print(f"model    : {llm.model} (built-in, local, CPU)")
    print(f"tools    : {', '.join(tools)}")
    print(f"question : {question}")

    # First run only: the registry converts the packaged GGUF to safetensors (~20 s), once.
    Registry.default().ensure(llm.model, progress=lambda step: print(f"first use: {step}"))

    started = time.perf_counter()
    # tool_choice="any": the grammar guarantees a well-formed call; the model picks the tool and
    # writes its arguments (the tool is ranked by the model's own log-probabilities).
    call_msg = llm.bind_tools(list(tools.values()), tool_choice="any").invoke([HumanMessage(question)])
    call = call_msg.tool_calls[0]
    print(f"chose    : {call['name']}({', '.join(f'{k}={v!r}' for k, v in call['args'].items())})")

    result = tools[call["name"]].invoke(call)
    print(f"result   : {result.content}")

    answer = llm.invoke([HumanMessage(question), call_msg, result])
    print(f"answer   : {answer.content.strip()}")
    usage = answer.usage_metadata or {}
    print(f"took     : {time.perf_counter() - started:.1f} s, {usage.get('output_tokens', '?')} tokens in the answer")
    return 0


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:]) or "What is 23 * 19?"))

"""Choosing one of a closed set of strings (a label, a route) with a chat model: by the model's own
log-probabilities when it is a local model, by its reply matched to the set otherwise."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agentkit.errors import BadInputError


def choose(model: Any, make_messages: Callable[[str], list[Any]], text: str, options: list[str],
           *, calibrate: bool = True) -> tuple[str, float]:  # fmt: skip
    """(option, probability) for the reply to `make_messages(text)` among `options`.

    A local model scores each option as a continuation of the prompt: log P(option | prompt), in
    one batched forward pass; the softmax over options is the probability. Every answer is one of
    the options, even from a 135M model that would not reply with a bare label. `calibrate`
    subtracts each option's score for a content-free input ("N/A"): small models lean towards
    some labels whatever the text, and this removes that prior (Zhao et al., 2021, "Calibrate
    before use"). Other LangChain models reply in text, matched to the options.
    """
    messages = make_messages(text)
    if not options:
        raise BadInputError("No options to choose from.", fix="pass at least one label or route.")
    from agentkit.models.chat_model import LocalChatModel

    if isinstance(model, LocalChatModel):
        scores = _logprobs(model, messages, options)
        if calibrate:
            prior = _logprobs(model, make_messages("N/A"), options)
            scores = [s - p for s, p in zip(scores, prior)]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        best = max(range(len(options)), key=scores.__getitem__)
        return options[best], weights[best] / sum(weights)
    reply = model.invoke(messages)
    text = str(getattr(reply, "content", reply)).strip().strip(".").strip()
    for option in options:
        if text == option:
            return option, 1.0
    for option in options:
        if text.lower().startswith(option.lower()) or option.lower() in text.lower().split():
            return option, 1.0
    raise BadInputError(
        f"The model replied {text[:80]!r}, which is none of {options}.",
        fix="use a local model (scored by log-probability), or a model that follows the label prompt.",
    )


def _logprobs(model: Any, messages: list[Any], options: list[str]) -> list[float]:
    from agentkit.models.messages import to_chat_dicts
    from agentkit.models.runtime import LoadedModel

    loaded = LoadedModel.get(model.model, model._registry())
    prompt_ids = loaded.encode_chat(to_chat_dicts(list(messages)))
    # Length-normalised: a multi-token label would otherwise lose to a one-token one by its length.
    return [
        lp / max(1, len(loaded.tokenizer(opt, add_special_tokens=False)["input_ids"]))
        for opt, lp in zip(options, loaded.continuation_logprobs(prompt_ids, options, adapter=model.adapter))
    ]  # fmt: skip

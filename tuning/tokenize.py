"""Examples -> token ids and labels. For chat SFT the loss covers the assistant's tokens only:
each assistant turn's span is found by rendering the conversation up to it with the chat
template (which is prefix-stable for ChatML-style templates) and masking everything else."""

from __future__ import annotations

from typing import Any

from agentkit.errors import BadInputError
from agentkit.tuning.data import ChatExample, LabelExample

IGNORE = -100  # label id the loss skips (torch CrossEntropyLoss ignore_index)


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True
    )
    return list(out["input_ids"])


def encode_chat(tokenizer: Any, example: ChatExample, max_length: int) -> dict[str, list[int]]:
    """input_ids + labels (IGNORE outside assistant turns), cut to max_length."""
    messages = example.messages
    full = _ids(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_ids(tokenizer, messages[:i], generation_prompt=True))
        end = len(_ids(tokenizer, messages[: i + 1], generation_prompt=False))
        if full[:start] != _ids(tokenizer, messages[:i], generation_prompt=True):
            raise BadInputError(
                "The chat template is not prefix-stable, so assistant turns cannot be located.",
                fix="use a ChatML-style template, or train on the last assistant turn only.",
            )
        labels[start:end] = full[start:end]  # the turn's text and its end-of-turn token
    full, labels = full[:max_length], labels[:max_length]
    return {"input_ids": full, "attention_mask": [1] * len(full), "labels": labels}


def encode_label(tokenizer: Any, example: LabelExample, max_length: int) -> dict[str, Any]:
    out = tokenizer(example.text, truncation=True, max_length=max_length)
    return {"input_ids": list(out["input_ids"]), "attention_mask": list(out["attention_mask"]), "labels": example.label}


class PadCollator:
    """Right-pads a batch; labels padded with IGNORE (token labels) or stacked (class labels)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        out = {
            "input_ids": torch.tensor([b["input_ids"] + [self.pad_id] * (width - len(b["input_ids"])) for b in batch]),
            "attention_mask": torch.tensor([b["attention_mask"] + [0] * (width - len(b["attention_mask"])) for b in batch]),
        }  # fmt: skip
        if isinstance(batch[0]["labels"], list):
            out["labels"] = torch.tensor([b["labels"] + [IGNORE] * (width - len(b["labels"])) for b in batch])
        else:
            out["labels"] = torch.tensor([b["labels"] for b in batch])
        return out

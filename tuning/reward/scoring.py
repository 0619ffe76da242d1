"""The reward model's forward, split in two where the trainable layers start: the frozen bottom
runs once per sequence and is cached, the top (trainable layers, final norm, score head) runs
every epoch. With `train_layers: 2` of SmolLM2's 30 layers an epoch costs ~1/15 of a full pass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agentkit.models.reward import pad_right


def inner_model(model: Any) -> Any:
    """The transformers sequence-classification model, under a PEFT wrapper or not."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def backbone(model: Any) -> Any:
    """The decoder stack (LlamaModel for SmolLM2): `.layers`, `.norm`, takes inputs_embeds."""
    inner = inner_model(model)
    return getattr(inner, inner.base_model_prefix)


def num_layers(model: Any) -> int:
    return len(backbone(model).layers)


@contextmanager
def only_layers(model: Any, start: int, stop: int | None, *, norm: bool) -> Iterator[Any]:
    """Run the backbone over layers[start:stop] only, with or without its final norm. The
    decoder loop walks `self.layers[:num_hidden_layers]`, so a shorter list runs as is."""
    import torch

    net = backbone(model)
    layers, final_norm = net.layers, net.norm
    net.layers = torch.nn.ModuleList(list(layers)[start:stop])
    if not norm:
        net.norm = torch.nn.Identity()
    try:
        yield net
    finally:
        net.layers, net.norm = layers, final_norm


def head(model: Any) -> Any:
    """The score head (`score` for Llama-style models; PEFT's trainable copy under LoRA)."""
    return inner_model(model).score


def head_linear(model: Any) -> Any:
    """The head's trainable nn.Linear (under LoRA, PEFT's copy inside its ModulesToSaveWrapper)."""
    score = head(model)
    copies = getattr(score, "modules_to_save", None)
    return copies[next(iter(copies))] if copies else score


def bottom_states(model: Any, rows: list[list[int]], pad_id: int, frozen: int, batch_size: int,
                  dtype: Any = None) -> list[Any]:  # fmt: skip
    """Each row's hidden states after the first `frozen` layers, (T_i, d) per row, unpadded.
    Bottom layers never train, so this runs once per sequence, without gradients."""
    import torch

    out: list[Any] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths pad little
    with only_layers(model, 0, frozen, norm=False) as net, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = pad_right([rows[i] for i in chunk], pad_id)
            hidden = net(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, d)
            for j, i in enumerate(chunk):
                state = hidden[j, : len(rows[i])].clone()
                out[i] = state.to(dtype) if dtype is not None else state
    return out


def top_features(model: Any, states: list[Any], frozen: int) -> Any:
    """(B, d) features the head reads, from cached bottom states: the trainable layers, the final
    norm, then the last real token -- the token HF's sequence-classification head reads too (the
    rightmost non-pad token; renderings end in '\\n', never the pad token)."""
    import torch

    lengths = torch.tensor([len(s) for s in states])
    width = int(lengths.max())
    dim = states[0].shape[-1]
    x = torch.zeros(len(states), width, dim)
    for i, s in enumerate(states):
        x[i, : len(s)] = s.float()
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()  # (B, T)
    with only_layers(model, frozen, None, norm=True) as net:
        hidden = net(inputs_embeds=x, attention_mask=mask).last_hidden_state  # (B, T, d)
    return hidden[torch.arange(len(states)), lengths - 1]  # (B, d)


def top_scores(model: Any, states: list[Any], frozen: int) -> Any:
    """(B,) rewards from cached bottom states (see top_features)."""
    return head(model)(top_features(model, states, frozen))[:, 0]


def full_features(model: Any, rows: list[list[int]], pad_id: int) -> Any:
    """(B, d) features the head reads, through the whole backbone (right padding)."""
    import torch

    ids, mask = pad_right(rows, pad_id)
    hidden = backbone(model)(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden[torch.arange(len(rows)), mask.sum(1) - 1]


def full_scores(model: Any, rows: list[list[int]], pad_id: int) -> Any:
    """(B,) rewards through the whole model, as `RewardModel.score` computes them."""
    ids, mask = pad_right(rows, pad_id)
    return model(input_ids=ids, attention_mask=mask).logits[:, 0]

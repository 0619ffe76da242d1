"""Rollouts: sample responses from the policy, then score every response token under the policy
(log-prob, value) and the reference (log-prob), in the layout the PPO update consumes.

Shapes: B prompts, P prompt tokens (left-padded), R response tokens (right-padded after EOS),
H hidden size, V vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Rollout:
    query: Any  # (B, P) prompt ids, left-padded
    query_mask: Any  # (B, P)
    response: Any  # (B, R) sampled ids; pad after the first EOS
    mask: Any  # (B, R) float: 1 up to and including the first EOS
    logprobs: Any  # (B, R) under the policy that sampled
    ref_logprobs: Any  # (B, R) under the reference (LoRA off)
    values: Any  # (B, R) value-head estimates of the state before each token
    texts: list[str]  # decoded responses, for the reward model
    scores: Any = None  # (B,) reward-model scores, set by the trainer
    shaped_scores: Any = None  # (B,) what PPO optimises: (score - baseline) / scale, set by the trainer
    value_shift: Any = None  # (B,) with a reward-head critic (raw-score units): its values are (V - shift) / scale
    value_scale: float = 1.0


def new_value_head(hidden: int) -> Any:
    """V(s): one linear layer on the policy's last hidden state (H -> 1).

    Shares the policy's trunk (and its LoRA) instead of a separate critic initialised from the
    reward model: on a CPU that is one forward/backward per PPO step instead of two, and a
    135M critic would double the memory. Zero weights: V(s) starts as the bias alone, which the
    trainer sets to the first batch's mean score (PPOTrainer._init_value_bias)."""
    import torch

    head = torch.nn.Linear(hidden, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


def encode_prompts(tokenizer: Any, prompts: list[list[dict]], max_length: int) -> tuple[Any, Any]:
    """Chat-template each prompt (with the assistant opener), left-pad: (B, P) ids and mask.

    Left padding puts every prompt's last token at the same column, so the response starts at P."""
    import torch

    rows = [
        tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False)
        for p in prompts
    ]
    rows = [list(r["input_ids"] if isinstance(r, dict) else r)[-max_length:] for r in rows]  # keep the end: the opener
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def response_mask(response: Any, eos_ids: list[int]) -> Any:
    """1 up to and including the first EOS of each row (B, R); the whole row if none was drawn."""
    import torch

    is_eos = torch.zeros_like(response, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= response == eos
    # cumsum counts EOS seen so far; positions after the first EOS have a count >= 1 *before* them.
    before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()
    return (before == 0).float()


def forward_response(lm: Any, value_head: Any, query: Any, query_mask: Any, response: Any, mask: Any,
                     *, with_values: bool = True, detach_values: bool = False) -> tuple[Any, Any, Any]:  # fmt: skip
    """Logits (B, R, V) for each response token and values (B, R) of the state before it.
    detach_values: the value head's loss does not reach the trunk (ppo.value_trunk: detached).

    One pass over prompt + response; the logits at position P - 1 + t predict response token t.
    Position ids follow the attention mask, as generate() numbered them when sampling (left
    padding would otherwise shift every position of a short prompt)."""
    import torch

    ids = torch.cat([query, response], dim=1)  # (B, P + R)
    attention = torch.cat([query_mask, mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    trunk = getattr(lm, lm.base_model_prefix)  # the decoder stack, without the LM head
    hidden = trunk(input_ids=ids, attention_mask=attention, position_ids=positions).last_hidden_state
    p, r = query.shape[1], response.shape[1]
    hidden = hidden[:, p - 1 : p - 1 + r]  # (B, R, H): states before each response token
    logits = lm.get_output_embeddings()(hidden)
    values = value_head(hidden.detach() if detach_values else hidden).squeeze(-1) if with_values else None
    return logits, values, hidden


def sample(policy: Any, tokenizer: Any, query: Any, query_mask: Any, sampling: Any, eos_ids: list[int]) -> Any:
    """(B, R) sampled response ids, R <= max_new_tokens (generate stops when every row ended)."""
    import torch

    with torch.no_grad():
        out = policy.generate(
            input_ids=query, attention_mask=query_mask, do_sample=True, max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
            eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    return out[:, query.shape[1] :]


def collect(peft_model: Any, value_head: Any, tokenizer: Any, prompts: list[list[dict]], sampling: Any,
            max_length: int, eos_ids: list[int]) -> Rollout:  # fmt: skip
    """Sample one response per prompt and record policy / reference log-probs and values."""
    import torch

    from agentkit.tuning.ppo.losses import logprobs_of

    lm = peft_model.get_base_model()  # LoRA layers live in its modules; disable_adapter switches them
    query, query_mask = encode_prompts(tokenizer, prompts, max_length)
    peft_model.eval()  # no LoRA dropout while sampling and scoring: these are the "old" policy's numbers
    response = sample(peft_model, tokenizer, query, query_mask, sampling, eos_ids)
    mask = response_mask(response, eos_ids)
    with torch.no_grad():
        logits, values, _ = forward_response(lm, value_head, query, query_mask, response, mask)
        logprobs = logprobs_of(logits / sampling.temperature, response)
        with peft_model.disable_adapter():  # the reference: the SFT model, same weights, LoRA off
            ref_logits, _, _ = forward_response(lm, value_head, query, query_mask, response, mask, with_values=False)
        ref_logprobs = logprobs_of(ref_logits / sampling.temperature, response)
    texts = tokenizer.batch_decode(
        [row[: int(m.sum())] for row, m in zip(response, mask)], skip_special_tokens=True
    )
    return Rollout(query, query_mask, response, mask, logprobs * mask, ref_logprobs * mask, values * mask, texts)

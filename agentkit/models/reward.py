"""`RewardModel`: a LangChain Runnable `{"prompt", "response"} -> float` over a registered reward
entry (RLHF step 2), its tool form and best-of-n ranking; plus the one rendering of a (prompt,
response) pair that training and scoring share."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, Field

from agentkit.errors import BadInputError
from agentkit.registry import EntryKind, ModelCard, Registry

REWARD_METHOD = "reward"  # the card's `method` of every reward entry
DEFAULT_MAX_LENGTH = 512


def as_messages(prompt: str | Sequence[dict]) -> list[dict]:
    """A prompt given as text is one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def encode_pair(tokenizer: Any, prompt: str | Sequence[dict], response: str, max_length: int) -> list[int]:
    """Token ids of prompt + response through the tokenizer's chat template (the answer as the
    assistant turn, closed by its end-of-turn token). Over `max_length`, the *front* is cut:
    the score is read at the last token, so the answer must survive."""
    messages = as_messages(prompt) + [{"role": "assistant", "content": response}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    return list(ids)[-max_length:]


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) as (B, T) tensors, right-padded. The sequence-classification
    head reads the last token that is not `pad_id`; every rendering ends in a newline after the
    end-of-turn token, so that token is never a pad and right padding is safe."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def check_same_tokenizer(policy_tokenizer: Any, reward_tokenizer: Any, names: tuple[str, str]) -> None:
    """The reward model must read the policy's tokens as the policy wrote them: refuse a pair of
    tokenizers whose vocabularies (or special tokens) differ. `names`: (policy id, reward id)."""
    policy, reward = names
    if policy_tokenizer.get_vocab() != reward_tokenizer.get_vocab():
        raise BadInputError(
            f"the reward model {reward!r} uses another tokenizer than the policy {policy!r} "
            f"({len(reward_tokenizer)} vs {len(policy_tokenizer)} tokens, different vocabularies).",
            fix=f"train the reward model on the policy's base (the base of {policy!r}), or pick a policy of {reward!r}'s base.",
        )
    if (policy_tokenizer.eos_token, policy_tokenizer.bos_token) != (
        reward_tokenizer.eos_token,
        reward_tokenizer.bos_token,
    ):
        raise BadInputError(
            f"the reward model {reward!r} and the policy {policy!r} mark turns with different special tokens.",
            fix="use a reward model trained on the policy's base.",
        )


def reward_card(registry: Registry, entry_id: str) -> ModelCard:
    """The card of a reward entry; anything else is refused with the fix."""
    card = registry.card(entry_id)
    if card.method != REWARD_METHOD:
        raise BadInputError(
            f"{entry_id!r} is not a reward model (method={card.method!r}, task={card.task.value}).",
            fix="train one with `agentkit tune` (method: reward) and pass its id.",
        )
    return card


class ScoreInput(BaseModel):
    """The tool's arguments."""

    prompt: str = Field(description="the user's request")
    response: str = Field(description="a candidate answer to score")


class RewardModel(Runnable[dict, float]):
    """A reward model from the registry: `{"prompt": str | messages, "response": str} -> float`.

    Higher is better; scores are comparable for the same prompt (they were trained on pairwise
    differences, so the zero point means nothing). Load with `RewardModel.load(entry_id)`.

    Example:
        ```python
        rm = RewardModel.load("smollm2-hh-reward")
        rm.invoke({"prompt": "How do I bake bread?", "response": "Mix flour, water..."})  # 1.73
        best, scores = rm.best_of("How do I bake bread?", ["No.", "Mix flour, water..."])
        ```
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str = "reward", max_length: int = DEFAULT_MAX_LENGTH
    ) -> None:
        self.model, self.tokenizer, self.name, self.max_length = model, tokenizer, name, max_length
        self._lock = threading.Lock()  # one forward at a time; torch already uses every core

    @classmethod
    def load(cls, entry_id: str, registry: Registry | None = None) -> RewardModel:
        """Load (sha256-verified) a reward entry: a LoRA adapter with its trained score head on its
        base, or a fully fine-tuned sequence classifier; weights in eval mode, LoRA merged."""
        from transformers import AutoModelForSequenceClassification

        from agentkit.registry.loading import load_tokenizer, load_weights

        registry = registry or Registry.default()
        card = reward_card(registry, entry_id)
        registry.verify(entry_id)
        if card.kind is EntryKind.ADAPTER:
            from peft import PeftModel

            from agentkit.models.classifier import quiet_head_load

            registry.verify(card.base)
            with quiet_head_load():
                model = load_weights(registry.path(card.base), AutoModelForSequenceClassification, num_labels=1)
                start = card.lineage.start.folded_adapter if card.lineage.start else None  # an SFT LoRA under it
                if start:
                    registry.verify(start)
                    from agentkit.registry.adapters import fold_lora

                    model = fold_lora(model, registry.path(start))
                model = PeftModel.from_pretrained(model, str(registry.path(entry_id)), is_trainable=False)
            model = model.merge_and_unload()  # one matmul per layer instead of three
        else:
            model = load_weights(registry.path(entry_id), AutoModelForSequenceClassification, num_labels=1)
        tokenizer = load_tokenizer(registry.path(entry_id))
        model.config.pad_token_id = tokenizer.pad_token_id
        max_length = int(card.lineage.max_length or DEFAULT_MAX_LENGTH)
        return cls(model.eval(), tokenizer, name=entry_id, max_length=max_length)

    # ---- scoring ----------------------------------------------------------------------------
    def score(
        self, prompts: Sequence[str | Sequence[dict]], responses: Sequence[str], batch_size: int = 8
    ) -> list[float]:
        """One score per (prompt, response); batches group similar lengths to pad little."""
        import torch

        if len(prompts) != len(responses):
            raise BadInputError(
                f"{len(prompts)} prompts but {len(responses)} responses.", fix="pass one response per prompt."
            )
        rows = [encode_pair(self.tokenizer, p, r, self.max_length) for p, r in zip(prompts, responses)]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out = [0.0] * len(rows)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = pad_right([rows[i] for i in chunk], self.tokenizer.pad_token_id)
            with self._lock, torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits  # (B, 1)
            for row, i in enumerate(chunk):
                out[i] = float(logits[row, 0])
        return out

    def _score_inputs(self, inputs: list[Any]) -> list[float | Exception]:
        good: dict[int, tuple[Any, str]] = {}
        errors: dict[int, Exception] = {}
        for i, x in enumerate(inputs):
            if (
                isinstance(x, dict)
                and isinstance(x.get("response"), str)
                and isinstance(x.get("prompt"), (str, list))
            ):
                good[i] = (x["prompt"], x["response"])
            else:
                errors[i] = BadInputError(
                    f"RewardModel input {i} must be {{'prompt': str | messages, 'response': str}}, got {type(x).__name__}"
                    + (f" with keys {sorted(x)}" if isinstance(x, dict) else "") + ".",
                    fix="pass a dict with `prompt` and `response`.",
                )  # fmt: skip
        scores = self.score([p for p, _ in good.values()], [r for _, r in good.values()]) if good else []
        by_index = dict(zip(good, scores, strict=True))
        return [by_index[i] if i in by_index else errors[i] for i in range(len(inputs))]

    def _score_one(self, input: Any) -> float:
        result = self._score_inputs([input])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def invoke(self, input: dict, config: RunnableConfig | None = None, **kwargs: Any) -> float:
        return self._call_with_config(self._score_one, input, config)

    def batch(self, inputs: list[dict], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[float]:  # fmt: skip
        # One padded forward per chunk, not one invoke per input in threads queueing on the lock.
        return self._batch_with_config(
            self._score_inputs, list(inputs), config, return_exceptions=return_exceptions
        )

    # ---- using the scores ---------------------------------------------------------------------
    def best_of(self, prompt: str | Sequence[dict], candidates: Sequence[str]) -> tuple[str, list[float]]:
        """The highest-scoring candidate answer to `prompt`, and every candidate's score."""
        if not candidates:
            raise BadInputError("best_of got no candidates.", fix="pass at least one candidate answer.")
        scores = self.score([prompt] * len(candidates), list(candidates))
        best = max(range(len(candidates)), key=scores.__getitem__)
        return candidates[best], scores

    def to_tool(self, name: str = "score_response", description: str | None = None) -> Any:
        """A LangChain tool with `prompt` and `response` arguments that returns the score."""
        from langchain_core.tools import StructuredTool

        return StructuredTool.from_function(
            func=lambda prompt, response: self.invoke({"prompt": prompt, "response": response}),
            name=name,
            description=description or (
                f"Score how good `response` is as an answer to `prompt` with the reward model {self.name!r}. "
                "Higher is better; compare scores of answers to the same prompt."),
            args_schema=ScoreInput,
        )  # fmt: skip

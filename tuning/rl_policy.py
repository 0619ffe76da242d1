"""The RL policy and its reference, built from the SFT stage's entry, and the result folded back
into one LoRA adapter over the raw base (so chat, export and merge use it like any LoRA).

Shared by ppo, grpo and rloo: all three start from the SFT entry, train a fresh LoRA on top, and
take KL against that same SFT model (the LoRA switched off: no second copy of the weights)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import EntryKind, ModelCard, ModelTask, Registry

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class PolicySource:
    """Where the policy starts: a causal_lm base entry, or a LoRA adapter entry (the SFT stage) on one.

    `sft_lora` holds that adapter's folder when there is one: it is merged into the base weights
    in memory for training, and concatenated with the new LoRA when the result is saved."""

    entry: str  # the `base:` of the config: the SFT output (adapter) or a base model
    base: str  # the raw base model's registry id
    base_card: ModelCard
    sft_lora: Path | None

    @classmethod
    def resolve(cls, registry: Registry, entry: str, field: str = "base") -> PolicySource:
        card = registry.verify(entry)
        if card.task is not ModelTask.CAUSAL_LM:
            raise BadInputError(
                f"`{field}: {entry}` is a {card.task.value} entry; the policy must be a chat (causal_lm) model.",
                fix="set it to the SFT stage's output (or a causal_lm base such as smollm2-135m-instruct).",
            )
        if card.kind is EntryKind.BASE:
            return cls(entry, entry, card, None)
        folder = registry.path(entry)
        peft = json.loads((folder / ADAPTER_CONFIG).read_text())
        if peft.get("peft_type") != "LORA" or peft.get("use_dora") or peft.get("modules_to_save"):
            raise BadInputError(
                f"`{field}: {entry}` is a {peft.get('peft_type')} adapter"
                f"{' with DoRA' if peft.get('use_dora') else ''}{' with modules_to_save' if peft.get('modules_to_save') else ''}; "
                "RL stages start from a plain LoRA SFT adapter or a full model.",
                fix=f"train the SFT stage with plain LoRA, or `agentkit models merge {entry}` and use the merged id.",
            )
        base_card = registry.verify(card.base)
        return cls(entry, card.base, base_card, folder)

    def load(self, registry: Registry) -> tuple[Any, Any]:
        """(model, tokenizer): the base with the SFT LoRA merged into its weights, fp32, train mode off."""
        from transformers import AutoModelForCausalLM

        from agentkit.registry.loading import load_tokenizer, load_weights

        tokenizer = load_tokenizer(self.sft_lora if self.sft_lora is not None else registry.path(self.base))
        model = load_weights(registry.path(self.base), AutoModelForCausalLM)
        if self.sft_lora is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.sft_lora)).merge_and_unload()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return model, tokenizer

    def lineage(self) -> dict[str, Any]:
        return {"policy_from": self.entry, "base": self.base, "base_weights_sha256": self.base_card.weights}


def check_reward_tokenizer(policy_tokenizer: Any, reward: Any, policy_id: str, reward_id: str) -> None:
    """Refuse a reward model that reads text through another tokenizer than the policy's: the
    rollouts it scores are decoded from the policy's tokens, and a different vocabulary means a
    reward model trained on a different base (B1's check, named for both entries)."""
    from agentkit.models.reward import check_same_tokenizer

    check_same_tokenizer(policy_tokenizer, reward.tokenizer, (policy_id, reward_id))


def save_folded_adapter(peft_model: Any, source: PolicySource, stage: Path, tokenizer: Any) -> None:
    """Write the trained LoRA as a PEFT folder over the raw base, with the SFT LoRA folded in.

    The policy trained W' = W + dW_sft (merged) + dW_rl. A LoRA of rank r1 + r2 with
    A = [A_sft; A_rl] (rows) and B = [s1 * B_sft, s2 * B_rl] (columns) and scaling 1 computes
    dW_sft + dW_rl exactly, so the saved adapter reproduces the trained policy on the raw base."""
    import torch
    from safetensors.torch import load_file, save_file

    peft_model.save_pretrained(stage)  # adapter_config.json + adapter_model.safetensors (the RL LoRA)
    tokenizer.save_pretrained(stage)
    if source.sft_lora is None:
        return
    rl_cfg = json.loads((stage / ADAPTER_CONFIG).read_text())
    sft_cfg = json.loads((source.sft_lora / ADAPTER_CONFIG).read_text())
    rl, sft = load_file(str(stage / ADAPTER_WEIGHTS)), load_file(str(source.sft_lora / ADAPTER_WEIGHTS))
    s_rl, s_sft = _scaling(rl_cfg), _scaling(sft_cfg)
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in [*rl, *sft] if ".lora_" in k})
    folded: dict[str, Any] = {}
    for module in modules:
        parts_a, parts_b = [], []
        for weights, scale, cfg in ((sft, s_sft, sft_cfg), (rl, s_rl, rl_cfg)):
            a, b = weights.get(f"{module}.lora_A.weight"), weights.get(f"{module}.lora_B.weight")
            if a is None:  # this adapter does not touch the module: a zero block of its rank
                other = rl if weights is sft else sft
                shape_a, shape_b = other[f"{module}.lora_A.weight"].shape, other[f"{module}.lora_B.weight"].shape
                a, b = torch.zeros(cfg["r"], shape_a[1]), torch.zeros(shape_b[0], cfg["r"])
            parts_a.append(a.float())
            parts_b.append(b.float() * scale)
        folded[f"{module}.lora_A.weight"] = torch.cat(parts_a, dim=0).contiguous()
        folded[f"{module}.lora_B.weight"] = torch.cat(parts_b, dim=1).contiguous()
    rank = sft_cfg["r"] + rl_cfg["r"]
    targets = sorted({m.rsplit(".", 1)[-1] for m in modules})
    rl_cfg.update(r=rank, lora_alpha=rank, use_rslora=False, target_modules=targets, rank_pattern={},
                  alpha_pattern={}, lora_dropout=0.0)  # fmt: skip
    save_file(folded, str(stage / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (stage / ADAPTER_CONFIG).write_text(json.dumps(rl_cfg, indent=2))


def _scaling(cfg: dict[str, Any]) -> float:
    """PEFT's LoRA scaling: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise BadInputError("LoRA adapters with per-module rank_pattern / alpha_pattern cannot be folded.",
                            fix="train the SFT stage with one rank for all modules.")  # fmt: skip
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / (r**0.5) if cfg.get("use_rslora") else alpha / r


def new_lora(model: Any, lora_config: Any) -> Any:
    """The fresh trainable LoRA on the (SFT-merged) policy."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config.to_peft("causal_lm"))

"""The RL policy's result folded back into one LoRA adapter over the raw base (so chat, export and
merge use it like any LoRA), and the checks and LoRA the RL stages share.

Shared by ppo, grpo and rloo: all three start (a `StartPoint` with plain_lora) from the SFT entry,
train a fresh LoRA on top, and take KL against that same SFT model (the LoRA switched off: no
second copy of the weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def check_reward_tokenizer(policy_tokenizer: Any, reward: Any, policy_id: str, reward_id: str) -> None:
    """Refuse a reward model that reads text through another tokenizer than the policy's: the
    rollouts it scores are decoded from the policy's tokens, and a different vocabulary means a
    reward model trained on a different base (B1's check, named for both entries)."""
    from agentkit.models.reward import check_same_tokenizer

    check_same_tokenizer(policy_tokenizer, reward.tokenizer, (policy_id, reward_id))


def save_folded_adapter(peft_model: Any, sft_lora: Path | None, stage: Path) -> None:
    """Write the trained LoRA as a PEFT folder over the raw base, with the SFT LoRA folded in.

    The policy trained W' = W + dW_sft (merged) + dW_rl. A LoRA of rank r1 + r2 with
    A = [A_sft; A_rl] (rows) and B = [s1 * B_sft, s2 * B_rl] (columns) and scaling 1 computes
    dW_sft + dW_rl exactly, so the saved adapter reproduces the trained policy on the raw base."""
    import torch
    from safetensors.torch import load_file, save_file

    peft_model.save_pretrained(stage)  # adapter_config.json + adapter_model.safetensors (the RL LoRA)
    if sft_lora is None:
        return
    rl_cfg = json.loads((stage / ADAPTER_CONFIG).read_text())
    sft_cfg = json.loads((sft_lora / ADAPTER_CONFIG).read_text())
    rl, sft = load_file(str(stage / ADAPTER_WEIGHTS)), load_file(str(sft_lora / ADAPTER_WEIGHTS))
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

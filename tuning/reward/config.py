"""The `reward:` block: RLHF step 2, a one-score head on the causal base trained on chosen /
rejected pairs with the pairwise loss -log sigmoid(r_chosen - r_rejected)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from agentkit.tuning.lora.config import LoraOrFull, PreferenceLoraConfig
from agentkit.tuning.preference import PreferenceDataConfig


class RewardMethodConfig(LoraOrFull):
    block: ClassVar[str] = "reward"
    flat_keys_ignored_under_full: ClassVar[bool] = False
    data_config: ClassVar[type[BaseModel]] = PreferenceDataConfig  # the `data:` block reads pairs

    peft: Literal["lora", "full"] = Field(
        default="lora",
        description="lora: LoRA on the base plus a trainable score head (an adapter entry); "
        "full: the top `train_layers` layers and the head train (a base entry)",
    )
    lora: PreferenceLoraConfig = Field(default_factory=PreferenceLoraConfig, description="the LoRA (peft: lora)")
    train_layers: int | None = Field(
        default=None, ge=0,
        description="only the top N transformer layers train (LoRA or full); the frozen ones run once per "
        "sequence and are cached. 0: the score head alone (saved as a base entry); None: every layer",
    )  # fmt: skip
    head_lr: float | None = Field(
        default=None, gt=0, description="learning rate of the score head; default: train.learning_rate"
    )
    center: float = Field(
        default=0.01, ge=0,
        description="weight of mean((r_chosen + r_rejected)^2), which keeps scores near 0 (TRL's "
        "center_rewards_coefficient); the pairwise loss alone leaves the zero point free",
    )  # fmt: skip

    head_init: Literal["random", "mean_diff"] = Field(
        default="random",
        description="mean_diff: before training, set the head to the mean of (chosen - rejected) features "
        "over the training pairs, scaled to the best pairwise loss (one extra pass of the trainable layers); "
        "random: the usual N(0, 0.02) init",
    )

    def to_peft(self, num_layers: int, linear_names: list[str] | None = None) -> Any:
        """`linear_names`: the leaf names of the model's Linear layers, which replace "all-linear"
        when `train_layers` is set (PEFT refuses layers_to_transform with a string target)."""
        import dataclasses

        layers = None
        if self.train_layers is not None:
            layers = list(range(max(num_layers - self.train_layers, 0), num_layers))
        targets = self.lora.target_modules
        if layers and isinstance(targets, str):
            if targets != "all-linear" or not linear_names:
                raise ValueError(
                    f"reward.train_layers with target_modules {targets!r}: give target_modules as a list of "
                    "module names (e.g. [q_proj, v_proj])"
                )
            targets = linear_names
        # SEQ_CLS (the task below): PEFT saves the `score` head whole beside the LoRA.
        return dataclasses.replace(self.lora.to_peft("sequence_classification"), target_modules=targets,
                                   layers_to_transform=layers or None)  # fmt: skip


def linear_leaf_names(model: Any) -> list[str]:
    """Leaf names of the Linear layers inside the transformer blocks (q_proj, ..., down_proj)."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and ".layers." in name})  # fmt: skip

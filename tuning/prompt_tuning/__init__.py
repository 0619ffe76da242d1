"""Prompt Tuning (Lester et al., 2021): trained soft-prompt embeddings at the input layer only,
initialised at random or from the embeddings of a text."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.prompt_learning import VirtualTokensConfig, peft_task


class PromptTuningMethodConfig(VirtualTokensConfig):
    # Defaults chosen by measurement (bench/method_defaults.py): a random start at the common rate
    # stayed at the base model's loss; 16 tokens started from a request-like text at lr 1e-2 learn.
    num_virtual_tokens: int = Field(default=16, gt=0, le=512, description="length of the trained prompt")
    init: Literal["random", "text"] = Field(default="text", description="text: start from init_text's embeddings")
    init_text: str | None = Field(
        default="Answer the following request helpfully and in detail:",
        description="with init: text, the words whose embeddings start the prompt",
    )

    @model_validator(mode="after")
    def _text_needs_text(self) -> PromptTuningMethodConfig:
        if self.init == "text" and not self.init_text:
            raise ValueError("init: text needs init_text (the words whose embeddings start the prompt)")
        return self


    def to_peft(self, task: str, tokenizer_folder: str | None = None) -> Any:
        """`tokenizer_folder`: with init: text, the base's own registry folder, where PEFT reads the
        tokenizer that turns init_text into embeddings (no hub)."""
        from peft import PromptTuningConfig, PromptTuningInit

        text = self.init == "text"
        return PromptTuningConfig(
            task_type=peft_task(task), num_virtual_tokens=self.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
            prompt_tuning_init_text=self.init_text if text else None,
            tokenizer_name_or_path=tokenizer_folder if text else None,
        )  # fmt: skip

    def make_trainable(self, model: Any, task: str) -> Any:
        from peft import get_peft_model

        return get_peft_model(model, self.to_peft(task, model.name_or_path))


register_method(TuningMethod(name="prompt_tuning", config_class=PromptTuningMethodConfig,
                             train_defaults={"learning_rate": 1e-2}))  # fmt: skip

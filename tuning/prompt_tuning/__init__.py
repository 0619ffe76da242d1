"""Prompt Tuning (Lester et al., 2021): trained soft-prompt embeddings at the input layer only,
initialised at random or from the embeddings of a text."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.prompt_learning import VirtualTokensConfig, peft_task


class PromptTuningMethodConfig(VirtualTokensConfig):
    init: Literal["random", "text"] = "random"
    init_text: str | None = Field(default=None, description="with init: text, e.g. 'Answer helpfully:'")

    @model_validator(mode="after")
    def _text_needs_text(self) -> PromptTuningMethodConfig:
        if self.init == "text" and not self.init_text:
            raise ValueError("init: text needs init_text (the words whose embeddings start the prompt)")
        return self


def apply_prompt_tuning(model: Any, config: PromptTuningMethodConfig, task: str) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    text = config.init == "text"
    return get_peft_model(model, PromptTuningConfig(
        task_type=peft_task(task), num_virtual_tokens=config.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=config.init_text if text else None,
        # the base's own registry folder: PEFT reads the tokenizer from it (no hub)
        tokenizer_name_or_path=model.name_or_path if text else None,
    ))  # fmt: skip


register_method(TuningMethod(name="prompt_tuning", config_class=PromptTuningMethodConfig, apply=apply_prompt_tuning))

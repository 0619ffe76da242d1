"""`sft`: RLHF step 1, supervised fine-tuning through the shared HF Trainer path -- LoRA by default
(`peft: lora`, an adapter) or every weight (`peft: full`, a new base entry)."""

from __future__ import annotations

from typing import Any

from agentkit.tuning.methods import TuningMethod, register_method
from agentkit.tuning.sft.config import SftMethodConfig


def apply_sft(model: Any, config: SftMethodConfig, task: str) -> Any:
    if config.peft == "full":
        from agentkit.tuning.full import apply_full

        return apply_full(model, config, task)
    from peft import get_peft_model

    return get_peft_model(model, config.to_peft(task))


def run_sft(config: Any, registry: Any, *, resume: bool, progress: bool) -> Any:
    """The shared Run (prepare / fit / register); `peft: full` registers a base entry."""
    from agentkit.tuning.full import FullMethodConfig
    from agentkit.tuning.trainer import Run

    run = Run.prepare(config, registry, progress=progress)
    run.fit(resume=resume)
    if run.trainer.is_world_process_zero():
        if config.method_config.peft == "lora":
            card = run.register()
        else:
            # Run.register reads adapter-or-base from the method; register as `full`, then restore
            # the card's method and config to what was asked (sft, peft: full).
            run.config = config.model_copy(update={"method": "full", "method_config": FullMethodConfig()})
            card = run.register()
            lineage = {**card.lineage, "config": config.to_yaml_dict()}
            card = registry.update_card(card.id, method="sft", lineage=lineage)
    run.trainer.accelerator.wait_for_everyone()
    return card if run.trainer.is_world_process_zero() else registry.card(config.output)


register_method(TuningMethod(name="sft", config_class=SftMethodConfig, apply=apply_sft, run=run_sft,
                             tasks=frozenset({"causal_lm"}), why_not="SFT trains a chat model"))  # fmt: skip

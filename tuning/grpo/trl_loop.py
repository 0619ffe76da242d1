"""GRPO and RLOO through TRL's GRPOTrainer / RLOOTrainer: the policy from the SFT entry with a fresh
LoRA, the trained reward model as the reward function, the result registered like PPO's."""

from __future__ import annotations

from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import ModelCard, Registry
from agentkit.tuning.rl_policy import check_reward_tokenizer
from agentkit.tuning.stage import StartPoint
from agentkit.tuning.rl_stage import (
    check_fresh_output,
    fit_prompt,
    load_reward,
    load_stage_prompts,
    register_rl_result,
)

CURVES = {"reward": "reward-model score (mean)", "kl": "KL to reference (per token)", "loss": "loss",
          "entropy": "entropy (nats / token)", "reward_std": "score std within batch",
          "completions/mean_length": "completion length"}  # fmt: skip


def reward_function(reward: Any) -> Any:
    """TRL's custom reward function: (prompts, completions, **columns) -> one float per completion.

    Conversational data: each prompt is a message list and each completion a one-message list."""

    def reward_model(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward.score(prompts, texts)

    return reward_model


def _trl_classes(algorithm: str) -> tuple[Any, Any]:
    try:
        if algorithm == "grpo":
            from trl import GRPOConfig, GRPOTrainer

            return GRPOConfig, GRPOTrainer
        from trl import RLOOConfig, RLOOTrainer

        return RLOOConfig, RLOOTrainer
    except ImportError as exc:  # a TRL without them (they moved before: PPO left in 2026)
        raise BadInputError(
            f"method {algorithm!r} needs TRL's {algorithm.upper()}Trainer, which this TRL does not provide ({exc}).",
            fix="pip install 'trl>=1.16,<2', or use method: ppo (agentkit's own loop).",
        ) from None


def run_group_method(config: Any, registry: Registry, *, resume: bool = False, progress: bool = False) -> ModelCard:
    """TuningMethod.run for `method: grpo` and `method: rloo`."""
    import time

    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, set_seed

    algorithm, block, train = config.method, config.method_config, config.train
    if train.batch_size % block.num_generations:
        raise BadInputError(
            f"train.batch_size={train.batch_size} counts completions and must be a multiple of "
            f"{algorithm}.num_generations={block.num_generations}.",
            fix=f"set train.batch_size to {block.num_generations * max(1, train.batch_size // block.num_generations)}.",
        )
    args_class, trainer_class = _trl_classes(algorithm)
    check_fresh_output(registry, config, resume)
    start = StartPoint.resolve(registry, config.base, plain_lora=True)
    prompts = load_stage_prompts(config)
    reward = load_reward(registry, block.reward_model)
    set_seed(train.seed)
    model, tokenizer = start.load(registry)
    check_reward_tokenizer(tokenizer, reward, config.base, block.reward_model)
    tokenizer.padding_side = "left"  # TRL generates from left-padded prompts
    args = args_class(
        output_dir=str(registry.root / "runs" / config.output),
        per_device_train_batch_size=train.batch_size, num_generations=block.num_generations,
        max_completion_length=block.max_new_tokens, temperature=block.temperature, beta=block.beta,
        num_iterations=block.num_iterations, epsilon=block.epsilon, learning_rate=train.learning_rate,
        num_train_epochs=train.epochs, max_steps=train.max_steps or -1, weight_decay=train.weight_decay,
        logging_steps=train.logging_steps, seed=train.seed, save_strategy="no", report_to=[],
        use_cpu=not torch.accelerator.is_available(), disable_tqdm=not progress, dataloader_pin_memory=False,
        # TRL turns on bf16 and activation checkpointing by default (GPU habits); every other stage
        # trains in float32, and recomputing activations would only cost CPU time on a 135M policy.
        bf16=False, activation_checkpointing=False,
    )  # fmt: skip
    trainer = trainer_class(
        model=model, reward_funcs=reward_function(reward), args=args,
        # TRL (1.16) takes each prompt whole; hh prompts run to ~1,000 tokens. Cut to train.max_length
        # from the front, as PPO does.
        train_dataset=Dataset.from_list([{"prompt": fit_prompt(tokenizer, p, train.max_length)} for p in prompts.train]),
        processing_class=tokenizer, peft_config=block.lora.to_peft("causal_lm"),
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    log = [e for e in trainer.state.log_history if "step" in e and "reward" in e]
    quarter = max(1, len(log) // 4)
    metrics = {
        "steps": trainer.state.global_step,
        "score_first": sum(e["reward"] for e in log[:quarter]) / quarter if log else None,
        "score_last": sum(e["reward"] for e in log[-quarter:]) / quarter if log else None,
        "kl_last": log[-1].get("kl") if log else None,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    tokenizer.padding_side = "right"  # as saved by every other stage
    return register_rl_result(
        registry, config, start, trainer.model, tokenizer, block.reward_model, prompts, metrics,
        trainer.state.log_history, CURVES, {"trainer": f"trl.{trainer_class.__name__}", "reference": "the policy with its LoRA disabled"},
    )  # fmt: skip

"""What every RL stage (ppo, grpo, rloo) shares: its prompts, the reward model (checked against the
policy's tokenizer), the registered result with lineage to the SFT and reward entries, and curves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import ModelCard, Registry
from agentkit.registry.card import Lineage
from agentkit.tuning.reporting import CURVES_FILE, METRICS_FILE
from agentkit.tuning.rl_policy import save_folded_adapter
from agentkit.tuning.stage import StartPoint, check_output_free, plot_panels, register_result

LOG_FILE = "rl_log.json"


@dataclass
class Prompts:
    train: list[list[dict]]
    eval: list[list[dict]]
    sha256: str
    rows: int


def load_stage_prompts(config: Any) -> Prompts:
    """The `data:` block's prompts (a prompt file or a preference file's prompts), split into
    train / held-out as the preference stages split pairs."""
    from agentkit.registry.store import sha256_file
    from agentkit.tuning.preference import load_prompts, split_pairs

    data = config.data
    prompts = load_prompts(data.train, limit=data.max_rows)
    if data.eval is not None:
        train, held = prompts, load_prompts(data.eval, limit=data.max_rows)
        digest = f"{sha256_file(Path(data.train))}:{sha256_file(Path(data.eval))}"
    else:
        train, held = split_pairs(prompts, data.eval_fraction, data.seed)
        digest = sha256_file(Path(data.train))
    if not train:
        raise BadInputError(f"data.train: {data.train} gave no training prompts.", fix="add prompts, or lower eval_fraction.")
    return Prompts(train, held, digest, len(prompts))


def fit_prompt(tokenizer: Any, messages: list[dict], max_length: int) -> list[dict]:
    """The prompt cut to at most `max_length` chat-template tokens (with the assistant opener),
    from the front, as PPO cuts its token rows: the oldest turns whole, then the front of the
    first remaining message's text. The newest turn, which the response answers, stays."""

    def length(rows: list[dict]) -> int:
        ids = tokenizer.apply_chat_template(rows, add_generation_prompt=True, tokenize=True, return_dict=False)
        return len(ids["input_ids"] if isinstance(ids, dict) else ids)

    messages = [dict(m) for m in messages]
    while (excess := length(messages) - max_length) > 0:
        ids = tokenizer(messages[0]["content"], add_special_tokens=False)["input_ids"]
        if len(messages) > 1 and len(ids) <= excess:
            messages = messages[1:]
        elif excess < len(ids):
            messages[0]["content"] = tokenizer.decode(ids[excess:])
        else:  # the template alone is longer than max_length: nothing left to cut
            break
    return messages


def load_reward(registry: Registry, reward_id: str) -> Any:
    """The reward stage's model (B1's RewardModel: scores prompt + response through the chat
    template it was trained with); anything but a reward entry is refused there, with the fix."""
    from agentkit.models.reward import RewardModel

    return RewardModel.load(reward_id, registry)


def check_fresh_output(registry: Registry, config: Any, resume: bool) -> None:
    if resume:
        raise BadInputError(
            f"method {config.method!r} does not keep checkpoints, so --resume has nothing to continue.",
            fix="run the stage again without --resume (in a pipeline: --stage NAME).",
        )
    check_output_free(registry, config.output)


def register_rl_result(registry: Registry, config: Any, start: StartPoint, peft_model: Any, tokenizer: Any,
                       reward_id: str, prompts: Prompts, metrics: dict[str, Any], log: list[dict[str, Any]],
                       curves: dict[str, str], extra_lineage: dict[str, Any]) -> ModelCard:  # fmt: skip
    """Publish the trained policy: one LoRA over the raw base (the SFT LoRA folded in), its log,
    metrics.json and training_curves.png, with lineage to the SFT and reward entries."""
    sft_lora = registry.path(start.adapter) if start.adapter else None
    lineage = Lineage(
        config=config.to_yaml_dict(), start=start.lineage(), base_weights_sha256=start.base.weights,
        reward_model=reward_id, reward_weights_sha256=registry.card(reward_id).weights,
        data_sha256=prompts.sha256, data_rows=prompts.rows,
        train_prompts=len(prompts.train), eval_prompts=len(prompts.eval), **extra_lineage,
    )  # fmt: skip

    def artifacts(stage: Path) -> None:
        (stage / METRICS_FILE).write_text(json.dumps({"final": metrics, "steps": log}, indent=1))
        plot_curves(log, curves, stage / CURVES_FILE)

    return register_result(
        registry, config.output, save=lambda stage: save_folded_adapter(peft_model, sft_lora, stage),
        tokenizer=tokenizer, task="causal_lm", method=config.method, base=start.base.id, metrics=metrics,
        lineage=lineage, source_ref=config.output, log=(LOG_FILE, log), artifacts=artifacts,
    )  # fmt: skip


def plot_curves(log: list[dict[str, Any]], panels: dict[str, str], path: Path) -> None:
    """One panel per logged key in `panels` (key -> title), by step, with its trend; a PNG."""
    series = {title: {key: [(e["step"], e[key]) for e in log if e.get(key) is not None]}
              for key, title in panels.items()}  # fmt: skip
    plot_panels(series, path, trend=True)

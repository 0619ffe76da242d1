"""The PPO loop (InstructGPT / DeepSpeed-Chat step 3): sample on prompts, score with the reward
model, subtract beta * KL to the reference per token, GAE, then several clipped PPO epochs on
each batch; beta follows the adaptive KL controller. Registers the policy's LoRA."""

from __future__ import annotations

import math
import random
import time
from typing import Any

from agentkit.registry import ModelCard, Registry
from agentkit.tuning.ppo.advantages import gae, masked_mean, masked_whiten, token_rewards
from agentkit.tuning.ppo.kl_control import AdaptiveKLController, FixedKLController
from agentkit.tuning.ppo.losses import entropy_of, logprobs_of, policy_loss, value_loss
from agentkit.tuning.rl_policy import check_reward_tokenizer, new_lora
from agentkit.tuning.stage import StartPoint
from agentkit.tuning.ppo.rollout import Rollout, collect, forward_response, new_value_head
from agentkit.tuning.rl_stage import (
    Prompts,
    check_fresh_output,
    load_reward,
    load_stage_prompts,
    register_rl_result,
)

# What training_curves.png shows: the two the issue asks for first, then the losses.
CURVES = {"score": "reward-model score (mean)", "kl": "KL to reference (nats / response)",
          "kl_coef": "beta (KL coefficient)", "policy_loss": "policy loss", "value_loss": "value loss",
          "clip_fraction": "clip fraction", "entropy": "entropy (nats / token)"}  # fmt: skip


class PPOTrainer:
    """One PPO run: `prepare` (load policy, reference, reward model, prompts), `fit`, `register`."""

    def __init__(self, config: Any, registry: Registry, start: StartPoint, peft_model: Any, value_head: Any,
                 tokenizer: Any, reward: Any, prompts: Prompts) -> None:  # fmt: skip
        import torch

        self.config, self.registry, self.start = config, registry, start
        self.peft_model, self.value_head, self.tokenizer = peft_model, value_head, tokenizer
        self.reward, self.prompts = reward, prompts
        self.ppo = config.method_config
        policy_params = [p for p in peft_model.parameters() if p.requires_grad]
        value_lr = self.ppo.value_learning_rate or config.train.learning_rate
        self.optimizer = torch.optim.AdamW(
            [{"params": policy_params}, {"params": list(value_head.parameters()), "lr": value_lr}],
            lr=config.train.learning_rate, weight_decay=config.train.weight_decay,
        )  # fmt: skip
        self.kl_ctl = (
            AdaptiveKLController(self.ppo.init_kl_coef, self.ppo.target_kl, self.ppo.kl_horizon)
            if self.ppo.adaptive_kl
            else FixedKLController(self.ppo.init_kl_coef)
        )
        generation_eos = getattr(peft_model.get_base_model().generation_config, "eos_token_id", None)
        generation_eos = generation_eos if isinstance(generation_eos, list) else [generation_eos]
        self.eos_ids = sorted({i for i in [tokenizer.eos_token_id, *generation_eos] if i is not None})
        self.log: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}

    @classmethod
    def prepare(cls, config: Any, registry: Registry, *, resume: bool = False) -> PPOTrainer:
        from transformers import set_seed

        check_fresh_output(registry, config, resume)
        ppo = config.method_config
        start = StartPoint.resolve(registry, config.base, plain_lora=True)  # before any weights load: cheap errors first
        prompts = load_stage_prompts(config)
        reward = load_reward(registry, ppo.reward_model)
        set_seed(config.train.seed)  # LoRA init and sampling repeat
        model, tokenizer = start.load(registry)
        check_reward_tokenizer(tokenizer, reward, config.base, ppo.reward_model)
        peft_model = new_lora(model, ppo.lora)
        value_head = new_value_head(model.config.hidden_size)
        return cls(config, registry, start, peft_model, value_head, tokenizer, reward, prompts)

    # ---- one PPO iteration ---------------------------------------------------------------
    def rollout(self, batch: list[list[dict]]) -> Rollout:
        import torch

        ppo, train = self.ppo, self.config.train
        rollout = collect(self.peft_model, self.value_head, self.tokenizer, batch, ppo.sampling,
                          train.max_length, self.eos_ids)  # fmt: skip
        scores = torch.tensor(self.reward.score(batch, rollout.texts), dtype=torch.float32)
        if ppo.score_clip is not None:
            scores = scores.clamp(-ppo.score_clip, ppo.score_clip)
        rollout.scores = scores
        return rollout

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Advantages from the rollout, then ppo_epochs passes of clipped updates over mini-batches."""
        import torch

        ppo = self.ppo
        rewards, kl = token_rewards(rollout.scores, rollout.logprobs, rollout.ref_logprobs, rollout.mask,
                                    self.kl_ctl.value)  # fmt: skip
        advantages, returns = gae(rewards, rollout.values, rollout.mask, ppo.gamma, ppo.lam)
        if ppo.whiten_advantages:
            advantages = masked_whiten(advantages, rollout.mask)
        lm = self.peft_model.get_base_model()
        # Dropout stays off (eval mode) during the update: with it on, the first epoch's ratio
        # pi / pi_old would differ from 1 through noise alone and the clip would bite at once.
        self.peft_model.eval()
        n = rollout.response.shape[0]
        size = ppo.mini_batch_size or n
        stats: dict[str, list[float]] = {}
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for _ in range(ppo.ppo_epochs):
            order = torch.randperm(n)
            for start in range(0, n, size):
                idx = order[start : start + size]
                mask = rollout.mask[idx]
                logits, values, _ = forward_response(lm, self.value_head, rollout.query[idx], rollout.query_mask[idx],
                                                     rollout.response[idx], mask)  # fmt: skip
                logits = logits / ppo.sampling.temperature
                logprobs = logprobs_of(logits, rollout.response[idx])
                pg_loss, pg_clip = policy_loss(logprobs, rollout.logprobs[idx], advantages[idx], mask, ppo.clip_range)
                vf_loss, vf_clip = value_loss(values, rollout.values[idx], returns[idx], mask, ppo.clip_range_value)
                loss = pg_loss + ppo.vf_coef * vf_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                self.optimizer.step()
                with torch.no_grad():
                    approx_kl = 0.5 * masked_mean((logprobs - rollout.logprobs[idx]) ** 2, mask)
                    entropy = masked_mean(entropy_of(logits), mask)
                for key, value in (("policy_loss", pg_loss), ("value_loss", vf_loss), ("clip_fraction", pg_clip),
                                   ("value_clip_fraction", vf_clip), ("approx_kl_old", approx_kl),
                                   ("entropy", entropy)):  # fmt: skip
                    stats.setdefault(key, []).append(float(value.detach()))
        kl_per_response = float(kl.sum(-1).mean())
        out = {key: sum(v) / len(v) for key, v in stats.items()}
        out.update(
            score=float(rollout.scores.mean()),
            score_std=float(rollout.scores.std()) if n > 1 else 0.0,
            kl=kl_per_response,
            kl_coef=self.kl_ctl.value,
            non_score_reward=float((rewards.sum(-1) - rollout.scores).mean()),
            response_length=float(rollout.mask.sum(-1).mean()),
        )
        self.kl_ctl.update(kl_per_response, n)  # beta for the next batch
        return out

    def _init_value_bias(self, rollout: Rollout) -> None:
        """Start V(s) at the first batch's mean score instead of 0.

        The head's weight is 0 at init, so V(s) = bias everywhere and the rollout's values can be
        set exactly. Without this, the clipped value loss lets V move only clip_range_value per
        batch towards returns of a few units, and the advantages of the first ~20 steps are mostly
        the missing baseline (InstructGPT starts the critic from the reward model for the same reason)."""
        import torch

        with torch.no_grad():
            self.value_head.bias.fill_(float(rollout.scores.mean()))
            rollout.values = self.value_head.bias.detach().clone() * rollout.mask

    # ---- the run ---------------------------------------------------------------------------
    def fit(self, progress: bool = False) -> dict[str, Any]:
        train = self.config.train
        prompts = self.prompts.train
        per_epoch = math.ceil(len(prompts) / train.batch_size)
        steps = train.max_steps or max(1, math.ceil(train.epochs * per_epoch))
        rng = random.Random(train.seed)
        order: list[int] = []
        started = time.perf_counter()
        bar = _Bar(steps) if progress else None
        for step in range(1, steps + 1):
            batch: list[list[dict]] = []
            while len(batch) < min(train.batch_size, len(prompts)):
                if not order:  # a new pass over the prompts, shuffled
                    order = list(range(len(prompts)))
                    rng.shuffle(order)
                batch.append(prompts[order.pop()])
            step_started = time.perf_counter()
            rollout = self.rollout(batch)
            if step == 1:
                self._init_value_bias(rollout)
            entry = {"step": step, **self.update(rollout), "seconds": round(time.perf_counter() - step_started, 2)}
            if step == 1 or step % train.logging_steps == 0 or step == steps:
                entry["sample"] = rollout.texts[0][:200]
            self.log.append(entry)
            if bar is not None:
                bar.update(step, entry)
        if bar is not None:
            bar.stop()
        first, last = self.log[: max(1, len(self.log) // 4)], self.log[-max(1, len(self.log) // 4) :]
        self.metrics = {
            "steps": steps,
            "score_first": sum(e["score"] for e in first) / len(first),  # mean over the first quarter
            "score_last": sum(e["score"] for e in last) / len(last),  # ... and the last quarter of steps
            "kl_last": self.log[-1]["kl"],
            "kl_max": max(e["kl"] for e in self.log),
            "kl_coef_last": self.kl_ctl.value,
            "train_seconds": round(time.perf_counter() - started, 2),
            "rollouts": steps * min(train.batch_size, len(prompts)),
        }
        return self.metrics

    def register(self) -> ModelCard:
        return register_rl_result(
            self.registry, self.config, self.start, self.peft_model, self.tokenizer, self.ppo.reward_model,
            self.prompts, self.metrics, self.log, CURVES,
            {"value_head": "linear on the policy's last hidden state (shared trunk), not saved",
             "reference": "the policy with its RL LoRA disabled (the SFT model)"},
        )  # fmt: skip


class _Bar:
    """A rich progress bar on stderr: step, score, KL, ETA."""

    def __init__(self, total: int) -> None:
        from agentkit.tuning.stage import progress_bar

        self.progress, self.task = progress_bar("ppo", total, eta=True)

    def update(self, step: int, entry: dict[str, Any]) -> None:
        status = f"score={entry['score']:.3g} kl={entry['kl']:.3g} beta={entry['kl_coef']:.3g}"
        self.progress.update(self.task, completed=step, status=status)

    def stop(self) -> None:
        self.progress.stop()


def run_ppo(config: Any, registry: Registry, *, resume: bool = False, progress: bool = False) -> ModelCard:
    """TuningMethod.run for `method: ppo`."""
    trainer = PPOTrainer.prepare(config, registry, resume=resume)
    trainer.fit(progress=progress)
    return trainer.register()

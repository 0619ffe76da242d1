"""The PPO loop (InstructGPT / DeepSpeed-Chat step 3): sample on prompts, score with the reward
model, subtract beta * KL to the reference per token, GAE, then several clipped PPO epochs on
each batch; beta follows the adaptive KL controller. Registers the policy's LoRA.

Options (the `ppo:` block): several samples per prompt with a per-prompt baseline subtracted from
the scores (RLOO-style), running score normalisation, a critic started from the reward model's
score head, a KL budget that ends the run once the recent batches have moved that far from the
reference, and a resumable checkpoint in runs/<output>/checkpoint-<step> every save_steps steps
(`resume=True` continues from the newest complete one)."""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError
from agentkit.registry import ModelCard, Registry
from agentkit.tuning.ppo.advantages import (
    RunningMoments,
    gae,
    masked_mean,
    masked_whiten,
    per_prompt_baseline,
    token_rewards,
)
from agentkit.tuning.ppo.config import KL_BUDGET_WINDOW
from agentkit.tuning.ppo.kl_control import AdaptiveKLController, FixedKLController
from agentkit.tuning.ppo.losses import entropy_of, logprobs_of, policy_loss, value_loss
from agentkit.tuning.rl_policy import check_reward_tokenizer, new_lora
from agentkit.tuning.stage import StartPoint, check_output_free
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
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_FILE = "state.pt"  # step, optimizer, controller, RNG: tensors and plain values (weights_only)
CHECKPOINT_WEIGHTS = "weights.safetensors"  # the RL LoRA and the value head: safetensors, as every weight


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
        self.moments = RunningMoments()  # of the raw scores, for reward_norm
        self.step = 0  # steps done (a resumed run starts after its checkpoint's)
        self.stopped: dict[str, Any] | None = None  # why fit ended before max_steps (ppo.kl_budget)
        self.rng = random.Random(config.train.seed)  # the prompt order
        self.order: list[int] = []  # what is left of the current shuffled pass over the prompts
        self.run_dir = registry.root / "runs" / config.output

    @classmethod
    def prepare(cls, config: Any, registry: Registry, *, resume: bool = False) -> PPOTrainer:
        from transformers import set_seed

        ppo = config.method_config
        checkpoint = None
        if resume:  # the output must still be free; the run folder must hold a complete checkpoint
            check_output_free(registry, config.output)
            checkpoint = latest_checkpoint(registry.root / "runs" / config.output)
            if checkpoint is None:
                raise BadInputError(
                    f"--resume: no complete PPO checkpoint in {registry.root / 'runs' / config.output} to resume from.",
                    fix="run the stage again without --resume (ppo.save_steps > 0 writes checkpoints).",
                )  # fmt: skip
        else:
            check_fresh_output(registry, config, resume)
        if config.train.batch_size % ppo.samples_per_prompt:
            k = ppo.samples_per_prompt
            raise BadInputError(
                f"train.batch_size={config.train.batch_size} counts responses and must be a multiple of "
                f"ppo.samples_per_prompt={k}.", fix=f"set train.batch_size to {k * max(1, config.train.batch_size // k)}.",
            )  # fmt: skip
        start = StartPoint.resolve(registry, config.base, plain_lora=True)  # before any weights load: cheap errors first
        prompts = load_stage_prompts(config)
        reward = load_reward(registry, ppo.reward_model)
        set_seed(config.train.seed)  # LoRA init and sampling repeat
        model, tokenizer = start.load(registry)
        check_reward_tokenizer(tokenizer, reward, config.base, ppo.reward_model)
        peft_model = new_lora(model, ppo.lora)
        value_head = new_value_head(model.config.hidden_size)
        if ppo.value_init == "reward_head":
            copy_reward_head(value_head, reward)
        trainer = cls(config, registry, start, peft_model, value_head, tokenizer, reward, prompts)
        if checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        return trainer

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
        # What PPO optimises: (score - shift) / scale per row, shift = the per-prompt baseline (or
        # the running mean when reward_norm has no baseline), scale = the running std.
        shift = per_prompt_baseline(scores, ppo.samples_per_prompt, ppo.baseline)
        scale = 1.0
        if ppo.reward_norm:
            self.moments.update(scores.tolist())
            scale = self.moments.std
            if ppo.baseline == "none":
                shift = shift + self.moments.mean
        rollout.shaped_scores = (scores - shift) / scale
        if ppo.value_init == "reward_head":  # this critic predicts raw scores: the same transform
            rollout.value_shift, rollout.value_scale = shift, scale
            rollout.values = (rollout.values - shift[:, None]) / scale * rollout.mask
        return rollout

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Advantages from the rollout, then ppo_epochs passes of clipped updates over mini-batches."""
        import torch

        ppo = self.ppo
        rewards, kl = token_rewards(rollout.shaped_scores, rollout.logprobs, rollout.ref_logprobs, rollout.mask,
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
        # One trunk: one gradient norm clipped. Detached, policy and critic are two networks and each is
        # clipped alone, so a large value loss (the first batches) cannot shrink the policy's step.
        groups = [g["params"] for g in self.optimizer.param_groups]
        if ppo.value_trunk == "shared":
            groups = [[p for g in groups for p in g]]
        for _ in range(ppo.ppo_epochs):
            order = torch.randperm(n)
            for start in range(0, n, size):
                idx = order[start : start + size]
                mask = rollout.mask[idx]
                logits, values, _ = forward_response(lm, self.value_head, rollout.query[idx], rollout.query_mask[idx],
                                                     rollout.response[idx], mask,
                                                     detach_values=ppo.value_trunk == "detached")  # fmt: skip
                logits = logits / ppo.sampling.temperature
                if rollout.value_shift is not None:
                    values = (values - rollout.value_shift[idx, None]) / rollout.value_scale
                logprobs = logprobs_of(logits, rollout.response[idx])
                pg_loss, pg_clip = policy_loss(logprobs, rollout.logprobs[idx], advantages[idx], mask, ppo.clip_range)
                vf_loss, vf_clip = value_loss(values, rollout.values[idx], returns[idx], mask, ppo.clip_range_value)
                loss = pg_loss + ppo.vf_coef * vf_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for group in groups:
                    torch.nn.utils.clip_grad_norm_(group, 1.0)
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
            shaped_score_std=float(rollout.shaped_scores.std()) if n > 1 else 0.0,
            non_score_reward=float((rewards.sum(-1) - rollout.shaped_scores).mean()),
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
            self.value_head.bias.fill_(float(rollout.shaped_scores.mean()))
            rollout.values = self.value_head.bias.detach().clone() * rollout.mask

    # ---- the run ---------------------------------------------------------------------------
    def fit(self, progress: bool = False) -> dict[str, Any]:
        train, ppo = self.config.train, self.ppo
        prompts = self.prompts.train
        k = ppo.samples_per_prompt
        per_step = min(max(1, train.batch_size // k), len(prompts))  # distinct prompts per step
        per_epoch = math.ceil(len(prompts) / per_step)
        steps = train.max_steps or max(1, math.ceil(train.epochs * per_epoch))
        if self.step == 0:  # a fresh run: checkpoints of an earlier (killed) run under this output go
            for old in self.run_dir.glob(CHECKPOINT_PREFIX + "*"):
                shutil.rmtree(old, ignore_errors=True)
        started = time.perf_counter()
        bar = _Bar(steps) if progress else None
        for step in range(self.step + 1, steps + 1):
            batch: list[list[dict]] = []
            while len(batch) < per_step * k:
                if not self.order:  # a new pass over the prompts, shuffled
                    self.order = list(range(len(prompts)))
                    self.rng.shuffle(self.order)
                batch += [prompts[self.order.pop()]] * k  # a prompt's samples side by side
            step_started = time.perf_counter()
            rollout = self.rollout(batch)
            # `not <=`: a NaN KL (a policy that has blown up) stops the run too.
            if ppo.kl_budget is not None and not (window := self._kl_window(rollout)) <= ppo.kl_budget:
                self.stopped = {"reason": "kl_budget", "at_step": step, "kl_window": window}
                break  # the policy that sampled this batch has spent the budget
            if step == 1 and ppo.value_init == "zero":
                self._init_value_bias(rollout)
            entry = {"step": step, **self.update(rollout), "seconds": round(time.perf_counter() - step_started, 2)}
            if step == 1 or step % train.logging_steps == 0 or step == steps:
                entry["sample"] = rollout.texts[0][:200]
            self.log.append(entry)
            self.step = step
            if ppo.save_steps and (step % ppo.save_steps == 0) and step < steps:
                self.save_checkpoint()
            if bar is not None:
                bar.update(step, entry)
        if bar is not None:
            bar.stop()
        if not self.log:
            raise BadInputError(
                f"ppo.kl_budget={ppo.kl_budget}: the SFT policy's first batch is already past it, so nothing was "
                "trained.", fix="raise ppo.kl_budget (KL is in nats per response) or leave it unset.",
            )  # fmt: skip
        first, last = self.log[: max(1, len(self.log) // 4)], self.log[-max(1, len(self.log) // 4) :]
        self.metrics = {
            "steps": self.step,
            **({"stopped": self.stopped} if self.stopped else {}),
            "score_first": sum(e["score"] for e in first) / len(first),  # mean over the first quarter
            "score_last": sum(e["score"] for e in last) / len(last),  # ... and the last quarter of steps
            "kl_last": self.log[-1]["kl"],
            "kl_max": max(e["kl"] for e in self.log),
            "kl_coef_last": self.kl_ctl.value,
            "train_seconds": round(time.perf_counter() - started, 2),
            "rollouts": self.step * per_step * k,
        }
        return self.metrics

    def _kl_window(self, rollout: Rollout) -> float:
        """KL per response of this batch (the current policy's) averaged with the batches before it."""
        batch_kl = float(((rollout.logprobs - rollout.ref_logprobs) * rollout.mask).sum(-1).mean())
        recent = [e["kl"] for e in self.log[-(KL_BUDGET_WINDOW - 1) :]] if KL_BUDGET_WINDOW > 1 else []
        return (sum(recent) + batch_kl) / (len(recent) + 1)

    # ---- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """runs/<output>/checkpoint-<step>: the RL LoRA, value head, optimizer, step, log, KL
        controller, score moments and RNG states, written to a temporary folder and renamed (a
        folder with the final name is complete); only the newest save_total_limit are kept."""
        import torch
        from peft import get_peft_model_state_dict

        self.run_dir.mkdir(parents=True, exist_ok=True)
        final = self.run_dir / f"{CHECKPOINT_PREFIX}{self.step:06d}"
        tmp = self.run_dir / f".tmp-{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        from safetensors.torch import save_file

        weights = {**{f"lora.{k}": v.contiguous() for k, v in get_peft_model_state_dict(self.peft_model).items()},
                   **{f"value_head.{k}": v.contiguous() for k, v in self.value_head.state_dict().items()}}  # fmt: skip
        save_file(weights, str(tmp / CHECKPOINT_WEIGHTS))
        state = {
            "step": self.step, "optimizer": self.optimizer.state_dict(),
            "kl_coef": self.kl_ctl.value, "moments": self.moments.state_dict(), "log": self.log,
            "order": list(self.order), "prompt_rng": self.rng.getstate(), "torch_rng": torch.get_rng_state(),
            "config": self.config.to_yaml_dict(),
        }  # fmt: skip
        torch.save(state, tmp / CHECKPOINT_FILE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(self.run_dir.glob(CHECKPOINT_PREFIX + "*"))[: -self.ppo.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, folder: Path) -> None:
        """Continue from a checkpoint written by save_checkpoint (same config)."""
        import torch
        from peft import set_peft_model_state_dict

        from safetensors.torch import load_file

        weights = load_file(str(folder / CHECKPOINT_WEIGHTS))
        part = lambda prefix: {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}  # noqa: E731
        set_peft_model_state_dict(self.peft_model, part("lora."))
        self.value_head.load_state_dict(part("value_head."))
        # No pickle: tensors, numbers, strings and containers only (a planted file cannot run code).
        state = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.value = state["kl_coef"]
        self.moments.load_state_dict(state["moments"])
        self.log, self.step, self.order = state["log"], state["step"], list(state["order"])
        self.rng.setstate(state["prompt_rng"])
        torch.set_rng_state(state["torch_rng"])

    def register(self) -> ModelCard:
        return register_rl_result(
            self.registry, self.config, self.start, self.peft_model, self.tokenizer, self.ppo.reward_model,
            self.prompts, self.metrics, self.log, CURVES,
            {"value_head": f"linear on the policy's last hidden state ({self.ppo.value_trunk} trunk; "
                           f"init {self.ppo.value_init}), not saved",
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


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder in run_dir (temporary folders are not complete)."""
    done = sorted(p for p in run_dir.glob(CHECKPOINT_PREFIX + "*") if (p / CHECKPOINT_FILE).is_file())
    return done[-1] if done else None


def copy_reward_head(value_head: Any, reward: Any) -> None:
    """InstructGPT's critic start: the reward model's score head (H -> 1) as the value head."""
    import torch

    from agentkit.tuning.reward.scoring import head_linear

    score = head_linear(reward.model)
    if score.weight.shape != value_head.weight.shape:
        raise BadInputError(
            f"ppo.value_init=reward_head: the reward model's score head is {tuple(score.weight.shape)}, the policy's "
            f"value head {tuple(value_head.weight.shape)} (another hidden size).", fix="set ppo.value_init: zero.",
        )  # fmt: skip
    with torch.no_grad():
        value_head.weight.copy_(score.weight.float())
        value_head.bias.copy_(score.bias.float() if getattr(score, "bias", None) is not None else torch.zeros(1))


def run_ppo(config: Any, registry: Registry, *, resume: bool = False, progress: bool = False) -> ModelCard:
    """TuningMethod.run for `method: ppo`."""
    trainer = PPOTrainer.prepare(config, registry, resume=resume)
    trainer.fit(progress=progress)
    return trainer.register()

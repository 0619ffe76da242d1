"""The reward stage's loop: pairs -> token rows (one chat rendering for chosen and rejected) ->
pairwise loss -log sigmoid(r_c - r_r) (+ a centring term) -> a registered reward entry with lineage."""

from __future__ import annotations

import random
import time
from typing import Any

from agentkit.errors import BadInputError
from agentkit.models.reward import REWARD_METHOD, encode_pair
from agentkit.registry import ModelCard, Registry
from agentkit.registry.card import Lineage
from agentkit.tuning.preference import PreferencePair, data_sha256, load_preference_split
from agentkit.tuning.reward import scoring
from agentkit.tuning.reward.config import RewardMethodConfig, linear_leaf_names
from agentkit.tuning.stage import StartPoint, check_output_free, progress_bar, register_result


def load_reward_model(registry: Registry, start: StartPoint, method: RewardMethodConfig) -> tuple[Any, Any]:
    """A one-score sequence-classification model on the start point, made trainable as configured:
    LoRA (+ the score head, saved whole) or full; below `train_layers` from the top, frozen."""
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = start.load(registry, AutoModelForSequenceClassification, num_labels=1)
    total = scoring.num_layers(model)
    if method.train_layers is not None and method.train_layers > total:
        raise BadInputError(f"reward.train_layers={method.train_layers}, but the model has {total} layers.",
                            fix=f"use 0..{total}, or leave it out to train every layer.")  # fmt: skip
    if method.peft == "lora" and method.train_layers != 0:
        from peft import get_peft_model

        model = get_peft_model(model, method.to_peft(total, linear_leaf_names(model)))
    else:  # full, or LoRA on zero layers: the plain model, frozen below train_layers
        frozen = total - (method.train_layers if method.train_layers is not None else total)
        for param in model.parameters():
            param.requires_grad_(False)
        net = scoring.backbone(model)
        for layer in list(net.layers)[frozen:]:
            layer.requires_grad_(True)
        if frozen == 0:
            net.embed_tokens.requires_grad_(True)
        net.norm.requires_grad_(True)
        scoring.head(model).requires_grad_(True)
    return model, tokenizer


class RewardRun:
    """One reward run: `prepare` (load, encode, cache the frozen layers), `fit`, `register`."""

    def __init__(self, config: Any, registry: Registry, start: StartPoint, model: Any, tokenizer: Any,
                 train: list[PreferencePair], held: list[PreferencePair]) -> None:  # fmt: skip
        self.config, self.registry, self.start = config, registry, start
        self.model, self.tokenizer, self.train_pairs, self.eval_pairs = model, tokenizer, train, held
        self.method: RewardMethodConfig = config.method_config
        total = scoring.num_layers(model)
        k = self.method.train_layers
        # Layers below `frozen` never train; their outputs are computed once and cached.
        self.frozen = total - k if k is not None else 0
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        # Token rows per split: [(chosen_ids, rejected_ids), ...]; benches add more eval splits.
        self.rows: dict[str, list[tuple[list[int], list[int]]]] = {}
        self._cache: dict[str, list[Any]] = {}
        self.add_split("train", train)
        self.add_split("eval", held)

    @property
    def train_rows(self) -> list[tuple[list[int], list[int]]]:
        return self.rows["train"]

    @property
    def eval_rows(self) -> list[tuple[list[int], list[int]]]:
        return self.rows["eval"]

    def add_split(self, name: str, pairs: list[PreferencePair]) -> None:
        """Render `pairs` (chosen and rejected, through the chat template) as split `name`."""
        length = self.config.train.max_length
        self.rows[name] = [(encode_pair(self.tokenizer, p.prompt, p.chosen, length),
                            encode_pair(self.tokenizer, p.prompt, p.rejected, length)) for p in pairs]  # fmt: skip
        self._cache.pop(name, None)

    @classmethod
    def prepare(cls, config: Any, registry: Registry | None = None) -> RewardRun:
        from transformers import set_seed

        registry = registry or Registry.default()
        check_output_free(registry, config.output)
        start = StartPoint.resolve(registry, config.base)
        train, held = load_preference_split(config.data)
        if not train:
            raise BadInputError(
                "no training pairs left after the eval split.", fix="lower data.eval_fraction."
            )
        set_seed(config.train.seed)  # before the head / LoRA initialisation, so runs repeat
        model, tokenizer = load_reward_model(registry, start, config.method_config)
        return cls(config, registry, start, model, tokenizer, train, held)

    # ---- scoring --------------------------------------------------------------------------
    def _states(self, split: str) -> list[Any]:
        """Cached bottom states of a split: [chosen_0, rejected_0, chosen_1, ...]."""
        if split not in self._cache:
            import torch

            rows = [r for pair in self.rows[split] for r in pair]
            # Training states in bf16 halve the cache (hh_rlhf, 1,000 pairs at ~200 tokens x 576:
            # 0.5 GB); eval states stay fp32, so eval scores equal RewardModel.score's.
            dtype = torch.bfloat16 if split == "train" else None
            self._cache[split] = scoring.bottom_states(self.model, rows, self.tokenizer.pad_token_id,
                                                       self.frozen, self.config.train.batch_size, dtype)  # fmt: skip
        return self._cache[split]

    def _scores(self, split: str, pairs: list[int]) -> tuple[Any, Any]:
        """(r_chosen, r_rejected), each (B,), for the pairs at these indices of a split."""
        if self.frozen:
            states = self._states(split)
            scores = scoring.top_scores(
                self.model, [states[2 * i + j] for i in pairs for j in (0, 1)], self.frozen
            )
        else:
            rows = self.rows[split]
            scores = scoring.full_scores(self.model, [rows[i][j] for i in pairs for j in (0, 1)],
                                         self.tokenizer.pad_token_id)  # fmt: skip
        return scores[0::2], scores[1::2]

    def evaluate(self, split: str = "eval") -> dict[str, float]:
        """Pairwise accuracy (share of pairs with r_chosen > r_rejected), mean margin and the
        mean pairwise loss -log sigmoid(r_c - r_r), over the pairs of a split."""
        import torch

        n = len(self.rows[split])
        if not n:
            return {}
        self.model.eval()
        right, margin, loss, size = 0, 0.0, 0.0, self.config.train.batch_size
        with torch.inference_mode():
            for start in range(0, n, size):
                chosen, rejected = self._scores(split, list(range(start, min(start + size, n))))
                right += int((chosen > rejected).sum())
                margin += float((chosen - rejected).sum())
                loss += float(-torch.nn.functional.logsigmoid(chosen - rejected).sum())
        return {"accuracy": right / n, "margin": margin / n, "loss": loss / n}

    def _features(self, split: str, pairs: list[int]) -> tuple[Any, Any]:
        """(f_chosen, f_rejected), each (B, d): what the head reads, for pairs of a split."""
        if self.frozen:
            states = self._states(split)
            feats = scoring.top_features(
                self.model, [states[2 * i + j] for i in pairs for j in (0, 1)], self.frozen
            )
        else:
            rows = self.rows[split]
            feats = scoring.full_features(self.model, [rows[i][j] for i in pairs for j in (0, 1)],
                                          self.tokenizer.pad_token_id)  # fmt: skip
        return feats[0::2], feats[1::2]

    def init_head_mean_diff(self) -> None:
        """Closed-form start: w = c * mean(f_chosen - f_rejected) over the training pairs, with the
        scale c that minimises the pairwise loss along that direction (a 1-D search), bias 0.
        On HH-RLHF this direction alone ranks ~0.6 of held-out pairs (bench/reward_eval.py)."""
        import torch

        n, size, diffs, sums = len(self.train_rows), self.config.train.batch_size, [], []
        with torch.inference_mode():
            for start in range(0, n, size):
                chosen, rejected = self._features("train", list(range(start, min(start + size, n))))
                diffs.append(chosen - rejected)
                sums.append(chosen + rejected)
            diff = torch.cat(diffs)  # (N, d)
            direction = diff.mean(0)
            # The head has no bias, and every feature shares a large common part (the last token is
            # always the same newline): project the mean feature out, so scores centre on 0.
            common = torch.cat(sums).mean(0)
            direction = direction - (direction @ common) / (common @ common) * common
            along = diff @ direction  # (N,) margins for c = 1
            scales = torch.logspace(-4, 4, 161) / along.abs().mean().clamp_min(1e-12)
            losses = torch.stack([-torch.nn.functional.logsigmoid(c * along).mean() for c in scales])
            weight = (scales[int(losses.argmin())] * direction).clone()
        score = scoring.head_linear(self.model)
        with torch.no_grad():
            score.weight.copy_(weight[None, :])
            if score.bias is not None:
                score.bias.zero_()

    # ---- training -------------------------------------------------------------------------
    def fit(self, progress: bool = False) -> dict[str, Any]:
        import torch

        train, method = self.config.train, self.method
        started = time.perf_counter()
        initial = self.evaluate()  # the fresh head: the baseline the trained model is compared with
        at_init: dict[str, float] = {}
        if method.head_init == "mean_diff":
            self.init_head_mean_diff()
            at_init = self.evaluate()
        params = [p for p in self.model.parameters() if p.requires_grad]
        head_ids = {id(p) for p in scoring.head(self.model).parameters()}
        groups = [
            {"params": [p for p in params if id(p) not in head_ids], "lr": train.learning_rate},
            {"params": [p for p in params if id(p) in head_ids], "lr": method.head_lr or train.learning_rate},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=train.weight_decay)
        batches_per_epoch = -(-len(self.train_rows) // train.batch_size)
        steps = train.max_steps or max(
            1, round(train.epochs * batches_per_epoch / train.gradient_accumulation)
        )
        warmup = train.warmup_steps * steps if train.warmup_steps < 1 else train.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)) * max(0.0, 1 - s / steps) if warmup else max(0.0, 1 - s / steps)
        )  # linear decay to 0, after an optional linear warmup  # fmt: skip
        rng = random.Random(train.seed)
        order: list[int] = []
        bar = progress_bar("reward", steps) if progress else None
        self.model.train()
        for step in range(1, steps + 1):
            losses, accs = [], []
            for _ in range(train.gradient_accumulation):
                if len(order) < train.batch_size:
                    fresh = list(range(len(self.train_rows)))
                    rng.shuffle(fresh)
                    order += fresh
                batch, order = order[: train.batch_size], order[train.batch_size :]
                chosen, rejected = self._scores("train", batch)
                # Bradley-Terry: P(chosen > rejected) = sigmoid(r_c - r_r); the centring term pins
                # the free zero point so scores stay comparable across prompts and runs.
                loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
                loss = loss + method.center * ((chosen + rejected) ** 2).mean()
                (loss / train.gradient_accumulation).backward()
                losses.append(float(loss.detach()))
                accs.append(float((chosen > rejected).float().mean().detach()))
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if step % train.logging_steps == 0 or step == steps:
                self.history.append({"step": step, "loss": sum(losses) / len(losses),
                                     "accuracy": sum(accs) / len(accs), "learning_rate": schedule.get_last_lr()[0]})  # fmt: skip
            if train.eval_steps and step % train.eval_steps == 0 and step != steps:
                self.history.append({"step": step, **{f"eval_{k}": v for k, v in self.evaluate().items()}})
                self.model.train()
            if bar:
                bar[0].update(bar[1], completed=step, status=f"loss={losses[-1]:.4g}")
        if bar:
            bar[0].stop()
        final = self.evaluate()
        if final:
            self.history.append({"step": steps, **{f"eval_{k}": v for k, v in final.items()}})
        losses = [h["loss"] for h in self.history if "loss" in h]
        self.metrics = {
            "train_loss_first": losses[0], "train_loss_last": losses[-1], "steps": steps,
            "train_seconds": round(time.perf_counter() - started, 2),
            **{f"eval_{k}_initial": v for k, v in initial.items()},
            **{f"eval_{k}_head_init": v for k, v in at_init.items()}, **{f"eval_{k}": v for k, v in final.items()},
        }  # fmt: skip
        self.model.eval()
        return self.metrics

    def register(self) -> ModelCard:
        """Publish the reward model: a LoRA adapter with its score head, or a base entry."""
        config, method = self.config, self.method
        adapter = hasattr(self.model, "peft_config")
        lineage = Lineage(
            config=config.to_yaml_dict(), start=self.start.lineage(), base_weights_sha256=self.start.base.weights,
            data_sha256=data_sha256(config.data.train, config.data.eval), label_names=["reward"],
            train_pairs=len(self.train_pairs), eval_pairs=len(self.eval_pairs),
            score="one logit at the last token; higher = preferred",
            frozen_layers=self.frozen if method.train_layers is not None else 0,
        )  # fmt: skip
        return register_result(
            self.registry, config.output, save=self.model.save_pretrained, tokenizer=self.tokenizer,
            task="sequence_classification", method=REWARD_METHOD, base=self.start.base.id if adapter else None,
            metrics=self.metrics, lineage=lineage, source_ref=f"reward run of {config.output}",
            log=("trainer_log.json", self.history),
        )  # fmt: skip


def run_reward(config: Any, registry: Registry, *, resume: bool = False, progress: bool = False) -> ModelCard:
    """`agentkit tune` for method: reward. Runs are minutes long, so there is no --resume."""
    if resume:
        raise BadInputError(
            "method reward does not resume from checkpoints.", fix="run it again without --resume."
        )
    run = RewardRun.prepare(config, registry)
    run.fit(progress=progress)
    return run.register()

"""RLHF step 3 on the built-in SmolLM2: a few PPO steps from an SFT LoRA against a tiny trained
reward model (the LoRA and value head move, the base weights do not, KL is finite, scores are
logged), the registered adapter reproduces the trained policy, and the bad inputs are refused
by name. GRPO and RLOO run two steps each through TRL."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agentkit.errors import BadInputError
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig, train
from agentkit.tuning.ppo.trainer import PPOTrainer

pytestmark = pytest.mark.integration

TOPICS = ["bread", "tea", "a bike tyre", "a bookshelf", "rice", "a tent"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    """A registry with the base, an SFT LoRA (2 steps) and a LoRA reward model (2 steps) on it."""
    root = tmp_path_factory.mktemp("ppo")
    home = Registry(root / "home")
    home.create_entry("smollm2-135m-instruct", lambda s: copy_hf_folder(registry.path("smollm2-135m-instruct"), s, link=True))
    sft = [{"instruction": f"How do I make {t}?", "output": f"Here is how to make {t}: gather what you need."}
           for t in TOPICS]  # fmt: skip
    (root / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in sft))
    pairs = [{"prompt": [{"role": "user", "content": f"How do I make {t}?"}],
              "chosen": [{"role": "assistant", "content": f"Here is how to make {t}, step by step."}],
              "rejected": [{"role": "assistant", "content": "No. Figure it out yourself."}]} for t in TOPICS]  # fmt: skip
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in pairs))
    train(TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "lora", "lora": {"r": 4},
        "data": {"train": str(root / "sft.jsonl"), "eval_fraction": 0},
        "train": {"max_steps": 2, "batch_size": 3, "learning_rate": 5e-3, "max_length": 64}, "output": "sft",
    }), registry=home)  # fmt: skip
    train(TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "reward", "reward": {"lora": {"r": 4}},
        "data": {"train": str(root / "pairs.jsonl"), "eval_fraction": 0},
        "train": {"max_steps": 2, "batch_size": 6, "learning_rate": 1e-3, "max_length": 64}, "output": "rm",
    }), registry=home)  # fmt: skip
    return home


def ppo_config(home: Registry, output: str, steps: int = 2, **ppo: object) -> TuneConfig:
    return TuneConfig.model_validate({
        "base": "sft", "method": "ppo",
        "ppo": {"reward_model": "rm", "sampling": {"max_new_tokens": 8}, "ppo_epochs": 2, **ppo},
        "data": {"train": str(home.root.parent / "pairs.jsonl"), "eval_fraction": 0},
        "train": {"max_steps": steps, "batch_size": 3, "learning_rate": 1e-3, "max_length": 64}, "output": output,
    })  # fmt: skip


def test_ppo_steps_move_the_lora_and_value_head_only_and_log_finite_kl(home: Registry) -> None:
    trainer = PPOTrainer.prepare(ppo_config(home, "ppo-a"), home)
    params = dict(trainer.peft_model.named_parameters())
    lora = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    head = trainer.value_head.weight.detach().clone()
    assert lora and all("lora_" in n for n in lora)
    metrics = trainer.fit()

    assert any(not torch.equal(params[n], before) for n, before in lora.items()), "no LoRA weight moved"
    assert all(torch.equal(params[n], before) for n, before in frozen.items()), "a frozen weight moved"
    assert not torch.equal(trainer.value_head.weight, head), "the value head did not train"
    assert len(trainer.log) == 2 and metrics["steps"] == 2
    for entry in trainer.log:
        for key in ("score", "kl", "policy_loss", "value_loss", "clip_fraction", "entropy", "kl_coef"):
            assert math.isfinite(entry[key]), (key, entry)
    # The LoRA starts at zero (B = 0), so the first batch is sampled by the reference itself.
    assert trainer.log[0]["kl"] == pytest.approx(0.0, abs=1e-4)

    card = trainer.register()
    assert (card.kind.value, card.base, card.method) == ("adapter", "smollm2-135m-instruct", "ppo")
    assert card.lineage.start.entry == "sft" and card.lineage.reward_model == "rm"
    assert card.lineage.reward_weights_sha256 == home.card("rm").weights
    folder = home.path(card.id)
    assert (folder / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [e["score"] for e in json.loads((folder / "metrics.json").read_text())["steps"]] == [
        e["score"] for e in trainer.log
    ]

    # The SFT LoRA is folded into the registered one: the raw base + that adapter is the trained policy.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(home.path(card.base), dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, str(folder)).eval()
    ids = torch.tensor([[1, 520, 2700, 30, 905, 42]])
    trainer.peft_model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, trainer.peft_model(ids).logits, atol=1e-3)


def test_a_kl_budget_stops_the_run_once_the_recent_batches_pass_it(home: Registry) -> None:
    # At lr 1e-3 the policy leaves the reference within a few steps (measured: batch KLs 0, 0.57,
    # -0.41, 0.40, 1.14, then a 3-batch mean of 1.6 stops it before step 6).
    trainer = PPOTrainer.prepare(ppo_config(home, "ppo-budget", steps=8, kl_budget=0.5), home)
    metrics = trainer.fit()

    stopped = metrics["stopped"]
    assert stopped["reason"] == "kl_budget" and stopped["kl_window"] > 0.5
    assert metrics["steps"] == len(trainer.log) == stopped["at_step"] - 1 < 8
    assert metrics["rollouts"] == 3 * metrics["steps"]
    # Every batch that was trained on was sampled while the recent KL was within the budget.
    kls = [e["kl"] for e in trainer.log]
    assert all(sum(kls[max(0, i - 2) : i + 1]) / len(kls[max(0, i - 2) : i + 1]) <= 0.5 for i in range(len(kls)))
    assert len(kls) >= 3 and max(kls) > 0.5  # one noisy batch past the budget did not stop it; the mean did
    assert trainer.register().metrics["stopped"]["at_step"] == stopped["at_step"]


def test_a_reward_model_with_another_tokenizer_is_refused_fake_reward(home: Registry, monkeypatch: pytest.MonkeyPatch,
                                                                      registry: Registry) -> None:  # fmt: skip
    # The scorer is a stand-in carrying MiniLM's tokenizer: what is under test is the check.
    from transformers import AutoTokenizer

    class OtherBaseReward:
        tokenizer = AutoTokenizer.from_pretrained(registry.path("minilm-l6"))

    monkeypatch.setattr("agentkit.tuning.ppo.trainer.load_reward", lambda reg, rid: OtherBaseReward())
    with pytest.raises(BadInputError, match="another tokenizer") as err:
        PPOTrainer.prepare(ppo_config(home, "ppo-bad-tok"), home)
    assert "'rm'" in str(err.value) and "'sft'" in str(err.value)


def test_bad_rl_configs_are_refused_by_field(home: Registry) -> None:
    with pytest.raises(ValueError, match="use_dora"):
        ppo_config(home, "x", lora={"use_dora": True})
    with pytest.raises(ValueError, match="ppo.clip_range"):
        ppo_config(home, "x", clip_range=0)
    with pytest.raises(BadInputError, match="resume"):
        PPOTrainer.prepare(ppo_config(home, "ppo-resume"), home, resume=True)
    with pytest.raises(BadInputError, match="not a reward model"):
        PPOTrainer.prepare(ppo_config(home, "ppo-no-rm", reward_model="sft"), home)
    with pytest.raises(BadInputError, match="multiple of"):
        train(group_config(home, "grpo", "g-bad", batch_size=3), registry=home)


def test_a_stopped_ppo_run_resumes_from_its_checkpoint_to_the_same_step_count(home: Registry,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # The levers on too: 3 samples of one prompt per step with a leave-one-out baseline, running
    # score normalisation, and the critic started from the reward model's score head.
    config = ppo_config(home, "ppo-resumed", steps=4, save_steps=2, samples_per_prompt=3, baseline="leave_one_out",
                        reward_norm=True, value_init="reward_head")  # fmt: skip
    trainer = PPOTrainer.prepare(config, home)
    from agentkit.tuning.reward.scoring import head_linear

    assert torch.equal(trainer.value_head.weight, head_linear(trainer.reward.model).weight)
    real_rollout, calls = PPOTrainer.rollout, []

    def killed_at_step_4(self: PPOTrainer, batch: list) -> object:
        calls.append(batch)
        assert len({json.dumps(p) for p in batch}) == 1 and len(batch) == 3  # one prompt, three samples
        if len(calls) == 4:
            raise KeyboardInterrupt("stopped during step 4")
        return real_rollout(self, batch)

    monkeypatch.setattr(PPOTrainer, "rollout", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.undo()
    run_dir = home.root / "runs" / "ppo-resumed"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint-000002"]
    assert "ppo-resumed" not in home

    resumed = PPOTrainer.prepare(config, home, resume=True)
    assert resumed.step == 2 and [e["step"] for e in resumed.log] == [1, 2]
    lora = {n: p.detach().clone() for n, p in resumed.peft_model.named_parameters() if p.requires_grad}
    assert any(n.endswith("lora_B.default.weight") and p.abs().sum() > 0 for n, p in lora.items()), \
        "the checkpoint's LoRA was not loaded (lora_B starts at zero)"  # fmt: skip
    assert resumed.optimizer.state, "the optimizer state was not restored"
    metrics = resumed.fit()
    assert metrics["steps"] == 4 and [e["step"] for e in resumed.log] == [1, 2, 3, 4]
    assert metrics["rollouts"] == 12
    params = dict(resumed.peft_model.named_parameters())
    assert any(not torch.equal(params[n], before) for n, before in lora.items()), "no LoRA weight moved after resuming"
    for entry in resumed.log:
        for key in ("score", "kl", "policy_loss", "value_loss"):
            assert math.isfinite(entry[key]), (key, entry)
    card = resumed.register()
    assert card.metrics["steps"] == 4
    # A resumed run that is registered cannot be resumed again; a missing checkpoint is refused.
    with pytest.raises(BadInputError, match="already exists"):
        PPOTrainer.prepare(config, home, resume=True)


def test_ppo_batch_must_hold_whole_groups_of_samples(home: Registry) -> None:
    with pytest.raises(BadInputError, match="multiple of"):
        PPOTrainer.prepare(ppo_config(home, "ppo-bad-k", samples_per_prompt=2), home)
    with pytest.raises(ValueError, match="samples_per_prompt"):
        ppo_config(home, "x", baseline="mean")


def group_config(home: Registry, method: str, output: str, batch_size: int = 4) -> TuneConfig:
    return TuneConfig.model_validate({
        "base": "sft", "method": method,
        method: {"reward_model": "rm", "num_generations": 2, "max_new_tokens": 8, "lora": {"r": 4}},
        "data": {"train": str(home.root.parent / "pairs.jsonl"), "eval_fraction": 0},
        "train": {"max_steps": 2, "batch_size": batch_size, "learning_rate": 1e-3}, "output": output,
    })  # fmt: skip


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_grpo_and_rloo_train_through_trl_with_the_reward_model(home: Registry, method: str) -> None:
    card = train(group_config(home, method, f"{method}-a"), registry=home)
    assert (card.method, card.base, card.lineage.reward_model) == (method, "smollm2-135m-instruct", "rm")
    assert card.metrics["steps"] == 2 and math.isfinite(card.metrics["score_last"])
    log = json.loads((home.path(card.id) / "rl_log.json").read_text())
    rewards = [e["reward"] for e in log if "reward" in e]
    assert len(rewards) == 2 and all(math.isfinite(r) for r in rewards)
    # The trained LoRA moved off its zero start (PEFT initialises lora_B to 0).
    from safetensors.torch import load_file

    weights = load_file(str(home.path(card.id) / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())


def test_group_stage_prompts_are_cut_from_the_front_to_max_length_keeping_the_last_turn(registry: Registry) -> None:
    # TRL's GRPOTrainer takes a prompt whole; the stage cuts it to train.max_length template
    # tokens as PPO cuts its rows: the oldest turns go whole, then the front of the next one.
    from agentkit.registry.loading import load_tokenizer
    from agentkit.tuning.rl_stage import fit_prompt

    tokenizer = load_tokenizer(registry.path("smollm2-135m-instruct"))

    def length(messages: list[dict]) -> int:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return len(ids["input_ids"] if isinstance(ids, dict) else ids)

    last = {"role": "user", "content": "And how long does the dough rest?"}
    turns = [{"role": "user", "content": "How do I bake bread? " * 20},
             {"role": "assistant", "content": "Mix flour, water, yeast and salt, then knead. " * 10}, last]  # fmt: skip
    budget = length(turns[1:]) - 10  # the first turn whole and ~10 tokens of the second must go
    short = fit_prompt(tokenizer, turns, budget)
    assert length(short) <= budget and short[-1] == last and len(short) == 2
    assert short[0]["role"] == "assistant" and short[0]["content"] != turns[1]["content"]  # the user turn went whole
    assert turns[1]["content"].rstrip().endswith(short[0]["content"].strip())  # then the assistant turn's front
    assert fit_prompt(tokenizer, [last], 1) == [last]  # the template alone is longer: returned, not looped on
    assert fit_prompt(tokenizer, turns, 4000) == turns  # short enough: untouched

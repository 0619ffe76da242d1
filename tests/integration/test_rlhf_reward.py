"""RLHF step 2 on the built-in SmolLM2: a reward model trains a few steps on a tiny preference
fixture (pairwise loss falls, trained weights move, frozen ones do not), registers with lineage,
and loads back as a RewardModel whose scores equal the training loop's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.errors import BadInputError
from agentkit.models.reward import RewardModel, check_same_tokenizer
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.reward.trainer import RewardRun

pytestmark = pytest.mark.integration

TOPICS = ["bread", "tea", "a bike tyre", "a bookshelf", "rice", "a tent", "soup", "a kite"]


def _pairs() -> list[dict]:
    # The chosen answer helps, the rejected one brushes the user off: a difference the head
    # can pick up in a few steps.
    return [{"prompt": [{"role": "user", "content": f"How do I make {t}?"}],
             "chosen": [{"role": "assistant", "content": f"Here is how to make {t}, step by step: first gather what you need."}],
             "rejected": [{"role": "assistant", "content": "No. Figure it out yourself."}]}
            for t in TOPICS]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    root = tmp_path_factory.mktemp("reward")
    home = Registry(root / "home")
    home.create_entry(
        "smollm2-135m-instruct", lambda s: copy_hf_folder(registry.path("smollm2-135m-instruct"), s, link=True)
    )
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in _pairs()))
    return home


def _config(home: Registry, output: str, block: dict, **train: object) -> TuneConfig:
    return TuneConfig.model_validate({
        "base": "smollm2-135m-instruct", "method": "reward", "reward": block,
        "data": {"train": str(home.root.parent / "pairs.jsonl"), "eval_fraction": 0.25},
        "train": {"learning_rate": 1e-3, "batch_size": 4, "max_length": 64, "max_steps": 4, **train},
        "output": output,
    })  # fmt: skip


def test_lora_reward_learns_registers_and_scores_like_training(home: Registry) -> None:
    run = RewardRun.prepare(_config(home, "rm-lora", {"lora": {"r": 8, "alpha": 16}}), home)
    before = run.evaluate("train")
    frozen = {n: p.detach().clone() for n, p in run.model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in run.model.named_parameters() if p.requires_grad}
    assert any("score" in n for n in trained) and any("lora_" in n for n in trained)
    metrics = run.fit()
    after = run.evaluate("train")
    assert after["loss"] < before["loss"]
    params = dict(run.model.named_parameters())
    assert all(params[n].detach().equal(v) for n, v in frozen.items())
    assert all(not params[n].detach().equal(v) for n, v in trained.items() if "lora_B" in n or "score" in n)
    assert (
        metrics["train_loss_first"] > 0 and "eval_accuracy" in metrics and "eval_accuracy_initial" in metrics
    )
    assert [h["loss"] for h in run.history if "loss" in h]  # rewards / losses logged per step

    card = run.register()
    assert (card.kind.value, card.task.value, card.method, card.base) == (
        "adapter",
        "sequence_classification",
        "reward",
        "smollm2-135m-instruct",
    )
    assert card.lineage.start.entry == "smollm2-135m-instruct" and card.lineage.train_pairs == 6
    rm = RewardModel.load("rm-lora", home)
    pairs = run.eval_pairs
    loaded = rm.score([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    import torch

    with torch.inference_mode():
        chosen, rejected = run._scores("eval", list(range(len(pairs))))
    assert loaded == pytest.approx(chosen.tolist() + rejected.tolist(), abs=1e-3)

    # The Runnable, the tool and best-of-n all read the same scores.
    prompt, good, bad = pairs[0].prompt[0]["content"], pairs[0].chosen, pairs[0].rejected
    value = rm.invoke({"prompt": prompt, "response": good})
    assert value == pytest.approx(loaded[0], abs=1e-3)
    assert rm.to_tool().invoke({"prompt": prompt, "response": good}) == pytest.approx(value, abs=1e-5)
    best, scores = rm.best_of(prompt, [bad, good])
    assert best == (good if scores[1] > scores[0] else bad) and len(scores) == 2
    with pytest.raises(BadInputError, match="input 0 must be"):
        rm.invoke({"text": "no prompt"})


def test_top_layers_reward_trains_only_the_top_and_caches_the_rest(home: Registry) -> None:
    run = RewardRun.prepare(
        _config(home, "rm-top", {"peft": "full", "train_layers": 1}, learning_rate=3e-4), home
    )
    assert run.frozen == 29  # SmolLM2-135M has 30 layers
    names = [n for n, p in run.model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(("model.layers.29.", "model.norm", "score")) for n in names)
    # The cached path (bottom once, top per step) gives the same scores as the full forward.
    import torch

    from agentkit.tuning.reward import scoring

    rows = [r for pair in run.eval_rows for r in pair]
    with torch.inference_mode():
        cached = scoring.top_scores(run.model, run._states("eval"), run.frozen)
        full = scoring.full_scores(run.model, rows, run.tokenizer.pad_token_id)
    assert cached.tolist() == pytest.approx(full.tolist(), abs=1e-3)
    below = run.model.model.layers[5].mlp.down_proj.weight.detach().clone()
    top = run.model.model.layers[29].mlp.down_proj.weight.detach().clone()
    before = run.evaluate("train")["loss"]
    run.fit()
    assert run.evaluate("train")["loss"] < before
    assert run.model.model.layers[5].mlp.down_proj.weight.equal(below)
    assert not run.model.model.layers[29].mlp.down_proj.weight.equal(top)
    card = run.register()
    assert card.kind.value == "base" and card.method == "reward"
    assert RewardModel.load("rm-top", home).score([run.eval_pairs[0].prompt], [run.eval_pairs[0].chosen])


def test_a_reward_model_on_another_tokenizer_is_refused(registry: Registry) -> None:
    from transformers import AutoTokenizer

    smol = AutoTokenizer.from_pretrained(registry.path("smollm2-135m-instruct"), local_files_only=True)
    minilm = AutoTokenizer.from_pretrained(registry.path("minilm-l6"), local_files_only=True)
    check_same_tokenizer(smol, smol, ("policy", "rm"))  # same tokenizer: fine
    with pytest.raises(
        BadInputError, match="reward model 'rm-minilm' uses another tokenizer than the policy 'smol-sft'"
    ):
        check_same_tokenizer(smol, minilm, ("smol-sft", "rm-minilm"))


def test_reward_model_load_refuses_an_entry_that_is_no_reward_model(registry: Registry) -> None:
    with pytest.raises(BadInputError, match="not a reward model"):
        RewardModel.load("smollm2-135m-instruct", registry)


def test_reward_config_refuses_a_data_file_with_a_bad_pair(home: Registry, tmp_path: Path) -> None:
    bad = _pairs()[:3]
    bad[2]["rejected"] = bad[2]["chosen"]
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(p) for p in bad))
    config = _config(home, "rm-bad", {})
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"train": str(tmp_path / "bad.jsonl")})}
    )
    with pytest.raises(BadInputError, match=r"row 3, field 'rejected': same text as chosen"):
        RewardRun.prepare(config, home)


def test_mean_diff_head_init_separates_the_training_pairs(home: Registry) -> None:
    run = RewardRun.prepare(
        _config(home, "rm-md", {"peft": "full", "train_layers": 0, "head_init": "mean_diff"}), home
    )
    assert run.frozen == 30  # head alone: every layer cached
    before = run.evaluate("train")
    run.init_head_mean_diff()
    after = run.evaluate("train")
    assert after["loss"] < before["loss"] and after["accuracy"] > 0.5
    metrics = run.fit()
    assert "eval_accuracy_head_init" in metrics

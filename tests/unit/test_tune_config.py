"""tune.yaml validation: the method block, unknown keys, relative paths (no model loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agentkit.errors import BadInputError
from agentkit.tuning import TuneConfig, register_method
from agentkit.tuning.lora.config import LoraMethodConfig
from agentkit.tuning import methods
from agentkit.tuning.data import DataConfig
from agentkit.tuning.methods import TuningMethod, get_method, method_names

BASE = {"base": "smollm2-135m-instruct", "method": "lora", "data": {"train": "t.jsonl"}, "output": "x"}


def test_method_block_is_validated_by_its_config_class() -> None:
    config = TuneConfig.model_validate({**BASE, "lora": {"r": 4, "use_dora": True}})
    assert isinstance(config.method_config, LoraMethodConfig) and config.method_config.r == 4
    assert config.to_yaml_dict()["lora"]["use_dora"] is True
    assert TuneConfig.model_validate(BASE).method_config.r == 8  # block optional: defaults


def test_unknown_fields_name_the_block_and_the_allowed_keys() -> None:
    with pytest.raises(ValidationError, match=r"lora\.rank.*allowed in lora: r, alpha"):
        TuneConfig.model_validate({**BASE, "lora": {"rank": 4}})
    with pytest.raises(ValidationError, match="outptu"):
        TuneConfig.model_validate({**BASE, "outptu": "y"})
    with pytest.raises(ValidationError, match="epoks"):
        TuneConfig.model_validate({**BASE, "train": {"epoks": 1}})


def test_unknown_method_lists_the_registered_ones() -> None:
    names = method_names()  # every method folder registers itself (RLHF helpers add theirs)
    assert {"full", "lora", "p_tuning", "p_tuning_v2", "prefix_tuning", "prompt_tuning", "sft", "reward", "dpo"} <= set(names)
    with pytest.raises(BadInputError, match="use one of: " + ", ".join(names) + r"\."):
        get_method("lorra")


def test_register_method_rejects_duplicates_and_bad_names() -> None:
    with pytest.raises(BadInputError, match="already registered"):
        register_method(TuningMethod(name="lora", config_class=LoraMethodConfig))
    with pytest.raises(BadInputError, match="lower_snake_case"):
        register_method(TuningMethod(name="Bad-Name", config_class=LoraMethodConfig))


def test_a_method_on_the_trainer_path_must_say_what_trains() -> None:
    """The default `run` is the HF Trainer path, which needs the block's PEFT config; a method
    with a loop of its own passes `run` and may use any block."""
    with pytest.raises(BadInputError, match="is not a TrainerMethodConfig.*pass `run=`"):
        register_method(TuningMethod(name="no_peft_config", config_class=DataConfig))
    loop = TuningMethod(name="own_loop_test_method", config_class=DataConfig, run=lambda *a, **k: None)
    try:
        assert register_method(loop) is loop and not loop.uses_trainer
    finally:
        methods._METHODS.pop(loop.name, None)
    assert get_method("lora").uses_trainer and not get_method("ppo").uses_trainer


def test_yaml_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "tune.yaml"
    path.write_text("base: smollm2-135m-instruct\nmethod: lora\ndata: {train: data/t.jsonl}\noutput: x\n")
    assert TuneConfig.from_yaml(path).data.train == str(tmp_path / "conf" / "data" / "t.jsonl")
    path.write_text("base: [unclosed\n")
    with pytest.raises(BadInputError,
                       match=r"tune.yaml:2:1: invalid YAML: .* \(while parsing a flow sequence at 1:7\)"):
        TuneConfig.from_yaml(path)


def test_output_and_base_must_be_registry_ids_before_training() -> None:
    with pytest.raises(ValidationError, match="Invalid registry id 'My-LoRA'"):
        TuneConfig.model_validate({**BASE, "output": "My-LoRA"})
    with pytest.raises(ValidationError, match="Invalid registry id"):
        TuneConfig.model_validate({**BASE, "output": "../../x"})


def test_prompt_tuning_text_init_needs_text() -> None:
    # init: text is the default, with a default sentence; taking the sentence away is refused.
    assert TuneConfig.model_validate({**BASE, "method": "prompt_tuning"}).method_config.init_text
    with pytest.raises(ValidationError, match="init_text"):
        TuneConfig.model_validate({**BASE, "method": "prompt_tuning", "prompt_tuning": {"init": "text", "init_text": None}})


def test_example_configs_validate() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    configs = sorted(root.glob("*/tune.yaml"))
    assert configs
    for path in configs:
        assert TuneConfig.from_yaml(path).output


@pytest.mark.parametrize("method", ["prefix_tuning", "p_tuning_v2"])
def test_method_that_does_not_apply_to_the_task_names_the_ones_that_do(method: str) -> None:
    config = {**BASE, "base": "minilm-l6", "task": "sequence_classification", "method": method}
    with pytest.raises(ValidationError, match=rf"method '{method}' does not apply to task 'sequence_classification'"
                       r".*past key values.*use one of: full, lora, p_tuning, prompt_tuning"):  # fmt: skip
        TuneConfig.model_validate(config)
    TuneConfig.model_validate({**config, "method": "prompt_tuning"})  # prompt methods do apply


def test_early_stopping_and_eval_schedule_fields_are_checked() -> None:
    with pytest.raises(ValidationError, match="early_stopping_patience"):
        TuneConfig.model_validate({**BASE, "train": {"early_stopping_patience": 0}})
    config = TuneConfig.model_validate({**BASE, "train": {"eval_steps": 5, "early_stopping_patience": 2}})
    assert config.train.eval_steps == 5


def test_checkpoints_kept_default_to_the_environment_then_two(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentkit.errors import BadInputError
    from agentkit.tuning.config import TrainConfig

    monkeypatch.delenv("AGENTKIT_SAVE_TOTAL_LIMIT", raising=False)
    assert TrainConfig().save_total_limit == 2
    monkeypatch.setenv("AGENTKIT_SAVE_TOTAL_LIMIT", "1")
    assert TrainConfig().save_total_limit == 1
    assert TrainConfig(save_total_limit=3).save_total_limit == 3  # the config's own value wins
    monkeypatch.setenv("AGENTKIT_SAVE_TOTAL_LIMIT", "none")
    with pytest.raises(BadInputError, match="AGENTKIT_SAVE_TOTAL_LIMIT is 'none'"):
        TrainConfig()


def test_the_shared_trainer_path_refuses_a_method_with_its_own_loop(tmp_path: Path) -> None:
    from agentkit.registry import Registry
    from agentkit.tuning.trainer import Run

    config = TuneConfig.model_validate({"base": "x", "method": "ppo", "output": "y",
                                        "ppo": {"reward_model": "r"}, "data": {"train": "p.jsonl"}})  # fmt: skip
    with pytest.raises(BadInputError, match="loop of its own"):
        Run.prepare(config, Registry(tmp_path))


def test_lora_settings_have_one_shape_and_flat_keys_of_old_configs_still_load() -> None:
    """sft, dpo and reward take their LoRA under `lora:`, as ppo and grpo do; an old config's flat
    keys move there with a FutureWarning, and a key given both ways is refused by name."""
    base = {"base": "smollm2-135m-instruct", "output": "x"}
    sft = TuneConfig.model_validate({**base, "method": "sft", "sft": {"lora": {"r": 4}}, "data": {"train": "t.jsonl"}})
    assert sft.method_config.lora.r == 4 and sft.to_yaml_dict()["sft"]["lora"]["r"] == 4
    with pytest.warns(FutureWarning, match=r"sft: LoRA settings \(r, alpha\) belong in a `lora:` block"):
        old = TuneConfig.model_validate({**base, "method": "sft", "sft": {"r": 4, "alpha": 8}, "data": {"train": "t.jsonl"}})
    assert (old.method_config.lora.r, old.method_config.lora.alpha) == (4, 8)
    pairs = {"train": "p.jsonl"}
    dpo = TuneConfig.model_validate({**base, "method": "dpo", "dpo": {"lora": {"r": 4}}, "data": pairs})
    assert (dpo.method_config.lora.r, dpo.method_config.lora.alpha) == (4, 32)  # the preference defaults
    with pytest.raises(ValidationError, match=r"reward.r and reward.lora.r are both set"):
        TuneConfig.model_validate({**base, "method": "reward", "reward": {"r": 4, "lora": {"r": 8}}, "data": pairs})
    with pytest.raises(ValidationError, match=r"sft.lora applies to peft: lora only"):
        TuneConfig.model_validate({**base, "method": "sft", "sft": {"peft": "full", "lora": {"r": 4}}, "data": {"train": "t.jsonl"}})


def test_a_method_s_train_defaults_fill_what_the_train_block_leaves_out() -> None:
    """A prompt-learning method learns at 10-100x LoRA's rate: its `train_defaults` apply when the
    config does not say, and a value the config gives wins; the lineage's config records the result."""
    from agentkit.tuning.prompt_learning import VirtualTokensConfig

    method = TuningMethod(name="defaults_test_method", config_class=VirtualTokensConfig,
                          train_defaults={"learning_rate": 3e-2, "epochs": 4})  # fmt: skip
    base = {"base": "smollm2-135m-instruct", "method": method.name, "data": {"train": "t.jsonl"}, "output": "x"}
    try:
        register_method(method)
        config = TuneConfig.model_validate(base)
        assert (config.train.learning_rate, config.train.epochs) == (3e-2, 4)
        assert config.to_yaml_dict()["train"]["learning_rate"] == 3e-2
        mine = TuneConfig.model_validate({**base, "train": {"learning_rate": 1e-3}})
        assert (mine.train.learning_rate, mine.train.epochs) == (1e-3, 4)
        assert method.train_default("batch_size") == 8  # not set by the method: TrainConfig's default
    finally:
        methods._METHODS.pop(method.name, None)
    with pytest.raises(BadInputError, match="train_defaults names 'lr', not a train: field"):
        register_method(TuningMethod(name="bad_defaults_method", config_class=VirtualTokensConfig,
                                     train_defaults={"lr": 1e-3}))  # fmt: skip


def test_label_smoothing_reaches_the_trainer_and_is_a_share_below_one(tmp_path: Path) -> None:
    from agentkit.tuning.trainer import _training_args

    config = TuneConfig.model_validate({**BASE, "train": {"label_smoothing": 0.1}})
    assert _training_args(config, tmp_path, has_eval=False).label_smoothing_factor == 0.1
    assert _training_args(TuneConfig.model_validate(BASE), tmp_path, has_eval=False).label_smoothing_factor == 0
    with pytest.raises(ValidationError, match="train.label_smoothing"):
        TuneConfig.model_validate({**BASE, "train": {"label_smoothing": 1.0}})


def test_the_tune_summary_line_flattens_nested_metrics() -> None:
    from types import SimpleNamespace

    from agentkit.cli.tune_cmd import _summary
    from agentkit.registry import EntryKind

    stopped = {"reason": "kl_budget", "at_step": 19, "kl_window": 2.61234}
    card = SimpleNamespace(id="p", kind=EntryKind.ADAPTER, base="b", method="ppo",
                           metrics={"steps": 18, "kl_max": 3.14159, "stopped": stopped})  # fmt: skip
    assert _summary(card) == ("registered p (adapter of b, ppo): steps=18, kl_max=3.142, stopped.reason=kl_budget, "
                              "stopped.at_step=19, stopped.kl_window=2.612")  # fmt: skip


def test_ppo_kl_budget_must_be_positive() -> None:
    ppo = {**BASE, "method": "ppo", "ppo": {"reward_model": "rm", "kl_budget": 0}}
    with pytest.raises(ValidationError, match="kl_budget"):
        TuneConfig.model_validate(ppo)
    config = TuneConfig.model_validate({**ppo, "ppo": {"reward_model": "rm", "kl_budget": 2.5}})
    assert config.method_config.kl_budget == 2.5

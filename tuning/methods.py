"""The tuning-method extension point: one `register_method` call per method folder.

A method names its config block (the key in tune.yaml, e.g. `lora:`), its pydantic config class,
and one hook, `run(config, registry, *, resume, progress) -> ModelCard`. The default `run` is the
shared HF Trainer path (`hf_trainer_run`), for methods whose config class only says what trains:
a `TrainerMethodConfig` whose `to_peft(task)` gives the PEFT config (None: every weight trains). A
method with a loop of its own (the RLHF stages) passes its own `run`: `config.py` + `trainer.py` +
one registration line, the TRL layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from agentkit.errors import BadInputError
from agentkit.extension import check_new_name


class TrainerMethodConfig(BaseModel):
    """A method block the shared HF Trainer path trains: the PEFT config it gives, or None when
    every weight trains (full fine-tuning, whose result is a base entry rather than an adapter)."""

    model_config = ConfigDict(extra="forbid")

    def to_peft(self, task: str) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.to_peft(task): the PEFT config, or None for every weight")

    def make_trainable(self, model: Any, task: str) -> Any:
        """The loaded base -> the model the Trainer trains (PEFT-wrapped, or every weight unfrozen).
        A method whose model needs more than its PEFT config (an init from activations, a continued
        adapter) overrides this."""
        peft_config = self.to_peft(task)
        if peft_config is None:
            for param in model.parameters():
                param.requires_grad_(True)
            return model
        from peft import get_peft_model

        return get_peft_model(model, peft_config)


def hf_trainer_run(config: Any, registry: Any, *, resume: bool = False, progress: bool = False) -> Any:
    """The default `run`: prepare (load the base, `make_trainable`, tokenise), fit on the HF
    Trainer, register the adapter (or base entry) with its lineage."""
    from agentkit.tuning.trainer import train_with_trainer

    return train_with_trainer(config, registry, resume=resume, progress=progress)


@dataclass(frozen=True)
class TuningMethod:
    name: str  # persisted in the adapter card and config: "lora", "prefix_tuning", ...
    config_class: type[BaseModel]
    # run(config, registry, *, resume, progress) -> ModelCard. The default, the shared HF Trainer
    # path, needs a TrainerMethodConfig; a loop of its own (reward, dpo, ppo, ...) brings its own.
    run: Callable[..., Any] = hf_trainer_run
    tasks: frozenset[str] = frozenset({"causal_lm", "sequence_classification"})
    why_not: str = ""  # shown when a config pairs this method with a task outside `tasks`
    # The `train:` settings this method learns with when the config leaves them out (learning_rate,
    # epochs, ...), chosen by measurement (bench/method_defaults.py): a prompt-learning method wants
    # 10-100x LoRA's rate. A key the config's `train:` block sets wins.
    train_defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_trainer(self) -> bool:
        return self.run is hf_trainer_run

    def train_default(self, name: str) -> Any:
        """The `train.<name>` this method trains with when a config leaves it out."""
        from agentkit.tuning.config import TrainConfig

        if name in self.train_defaults:
            return self.train_defaults[name]
        default = TrainConfig.model_fields[name]
        return default.get_default(call_default_factory=True)

    def check_task(self, task: str) -> None:
        if task not in self.tasks:
            others = ", ".join(m for m in method_names() if task in _METHODS[m].tasks)
            raise BadInputError(
                f"method {self.name!r} does not apply to task {task!r}{': ' + self.why_not if self.why_not else ''}.",
                fix=f"for {task} use one of: {others}.",
            )


_METHODS: dict[str, TuningMethod] = {}


def register_method(method: TuningMethod) -> TuningMethod:
    """Add a tuning method; names are unique and must be registry-safe, and a method on the shared
    Trainer path has a config class that gives its PEFT config (a TrainerMethodConfig)."""
    check_new_name("tuning method", method.name, _METHODS)
    from agentkit.tuning.config import TrainConfig

    unknown = sorted(set(method.train_defaults) - set(TrainConfig.model_fields))
    if unknown:
        raise BadInputError(f"Tuning method {method.name!r}: train_defaults names {unknown[0]!r}, not a train: field.",
                            fix=f"use fields of TrainConfig: {', '.join(TrainConfig.model_fields)}.")  # fmt: skip
    if method.uses_trainer and not issubclass(method.config_class, TrainerMethodConfig):
        raise BadInputError(
            f"Tuning method {method.name!r} trains on the shared Trainer path, but its config class "
            f"{method.config_class.__name__} is not a TrainerMethodConfig.",
            fix="subclass TrainerMethodConfig and give `to_peft(task)`, or pass `run=` (a loop of its own).",
        )
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> TuningMethod:
    _load_builtin_methods()
    if name not in _METHODS:
        raise BadInputError(
            f"Unknown tuning method {name!r}.", fix=f"use one of: {', '.join(sorted(_METHODS))}."
        )
    return _METHODS[name]


def method_names() -> list[str]:
    _load_builtin_methods()
    return sorted(_METHODS)


def _load_builtin_methods() -> None:
    # Importing a method folder registers it; a new method is a folder plus one line here.
    import agentkit.tuning.dpo  # noqa: F401
    import agentkit.tuning.full  # noqa: F401
    import agentkit.tuning.grpo  # noqa: F401
    import agentkit.tuning.lora  # noqa: F401
    import agentkit.tuning.p_tuning  # noqa: F401
    import agentkit.tuning.p_tuning_v2  # noqa: F401
    import agentkit.tuning.ppo  # noqa: F401
    import agentkit.tuning.prefix_tuning  # noqa: F401
    import agentkit.tuning.prompt_tuning  # noqa: F401
    import agentkit.tuning.reward  # noqa: F401
    import agentkit.tuning.rloo  # noqa: F401
    import agentkit.tuning.sft  # noqa: F401

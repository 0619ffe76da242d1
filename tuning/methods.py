"""The tuning-method extension point: one `register_method` call per method folder.

A method names its config block (the key in tune.yaml, e.g. `lora:`), its pydantic config class,
and either `apply(model, config, task) -> model`, which makes the trainable model for the shared HF
Trainer path, or `run(config, registry, *, resume, progress) -> ModelCard`, a training loop of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agentkit.errors import BadInputError
from agentkit.extension import check_new_name


@dataclass(frozen=True)
class TuningMethod:
    name: str  # persisted in the adapter card and config: "lora", "prefix_tuning", ...
    config_class: type[BaseModel]
    # (base model, method config, task) -> trainable model, for the shared HF Trainer path.
    apply: Callable[[Any, Any, str], Any] | None = None
    produces_adapter: bool = True  # False for full fine-tuning: the result is a base entry
    tasks: frozenset[str] = frozenset({"causal_lm", "sequence_classification"})
    why_not: str = ""  # shown when a config pairs this method with a task outside `tasks`
    # A method with a training loop of its own (the RLHF stages: reward, ppo, dpo, ...):
    # run(config, registry, *, resume, progress) -> ModelCard. None: the shared HF Trainer path.
    run: Callable[..., Any] | None = None

    def check_task(self, task: str) -> None:
        if task not in self.tasks:
            others = ", ".join(m for m in method_names() if task in _METHODS[m].tasks)
            raise BadInputError(
                f"method {self.name!r} does not apply to task {task!r}{': ' + self.why_not if self.why_not else ''}.",
                fix=f"for {task} use one of: {others}.",
            )


_METHODS: dict[str, TuningMethod] = {}


def register_method(method: TuningMethod) -> TuningMethod:
    """Add a tuning method; names are unique and must be registry-safe, and it has a way to train:
    `apply` (the shared HF Trainer path) or `run` (its own loop)."""
    check_new_name("tuning method", method.name, _METHODS)
    if method.apply is None and method.run is None:
        raise BadInputError(f"Tuning method {method.name!r} has neither `apply` nor `run`.",
                            fix="give `apply` (model -> trainable model, for the HF Trainer) or `run` (its own loop).")  # fmt: skip
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

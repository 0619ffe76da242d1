"""The suite file of `agentkit improve` (`Suite`, `load_suite`) and its decision rule (`paired_gain`,
`should_promote`): what a round runs on, and when a candidate wins."""

from __future__ import annotations

import glob
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentkit.errors import BadInputError

if TYPE_CHECKING:
    from agentkit.agents.spec import GoalSpec

# ---- the suite file ------------------------------------------------------------------------------
class SuiteModel(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="registry id of the base the agent runs on")
    adapter: str | None = Field(default=None, description="the first champion's adapter (None: the base alone)")
    engine: Literal["auto", "transformers", "llamacpp"] = Field(default="auto")


class CollectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=3, gt=0, le=999, description="sampled runs per train goal (seeds stay per round)")
    temperature: float = Field(default=0.7, gt=0, description="sampling temperature of the attempts")
    seed: int = Field(
        default=0, description="attempt a of round k samples with seed + 1000 (k - 1) + a: each round draws new runs"
    )


class EvaluateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=1, gt=0, description="runs per held-out goal and model, seeds seed..seed+n-1")
    temperature: float = Field(default=0.0, ge=0, description="0: greedy (one attempt is then enough)")
    seed: int = Field(default=1000)


class PromoteSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(default="agent-default", description="the alias that names the champion")
    min_gain_se: float = Field(default=1.0, ge=0, description="promote when the paired gain >= this many SEs")
    min_goals: float = Field(
        default=2.0, ge=0,
        description="... and the gain, counted in goals, is at least this. It matters: a candidate that wins some "
        "goals and loses none always passes one SE, so this is what keeps a single flipped goal from promoting",
    )  # fmt: skip


class TuneSettings(BaseModel):
    """The LoRA run of each round; `lora` and `train` are tune.yaml's blocks, checked when the suite
    loads (a typo must not wait for the tune stage, after the collect runs)."""

    model_config = ConfigDict(extra="forbid")

    start: Literal["champion", "base"] = Field(
        default="champion", description="champion: continue the champion's LoRA (a fresh one when it is the base)"
    )
    data: Literal["round", "all"] = Field(
        default="round",
        description="round: the SFT rows of this round's runs; all: of every round so far (a row once), so the "
        "runs of a round that was not promoted still teach the next one",
    )
    lora: dict[str, Any] = Field(default_factory=lambda: {"r": 16, "alpha": 32, "target_modules": "all-linear"})
    train: dict[str, Any] = Field(
        default_factory=lambda: {"epochs": 1, "learning_rate": 2e-4, "batch_size": 2, "max_length": 1024}
    )

    @field_validator("lora")
    @classmethod
    def _lora_block(cls, value: dict[str, Any]) -> dict[str, Any]:
        from agentkit.tuning.lora.config import LoraTuneConfig

        if "init_adapter" in value:
            raise ValueError("init_adapter is set by the loop (tune.start: champion); remove it")
        LoraTuneConfig.model_validate(value)
        return value

    @field_validator("train")
    @classmethod
    def _train_block(cls, value: dict[str, Any]) -> dict[str, Any]:
        from agentkit.tuning.config import TrainConfig

        TrainConfig.model_validate(value)
        return value


class Suite(BaseModel):
    """SUITE.yaml: goals to learn from, goals to judge by, the model, and how to tune and promote."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(description="the suite's folder under $AGENTKIT_HOME/improve and its adapters' prefix")
    model: SuiteModel
    strategy: Literal["auto", "plan", "guided", "free"] = Field(default="auto", description="the agents' strategy")
    train: list[str] = Field(min_length=1, description="goal files (globs), relative to the suite file")
    heldout: list[str] = Field(min_length=1, description="goal files (globs) never trained on")
    indexes: dict[str, str] = Field(default_factory=dict, description="index name -> folder, built if missing")
    collect: CollectSettings = Field(default_factory=CollectSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    tune: TuneSettings = Field(default_factory=TuneSettings)
    promote: PromoteSettings = Field(default_factory=PromoteSettings)


@dataclass
class Goals:
    train: list[Path]
    heldout: list[Path]


def goal_keys(goal_file: Path, spec: GoalSpec | None = None) -> set[Path | str]:
    """What makes two goal files one goal: the same (resolved) file, goal name or sentence."""
    from agentkit.agents.spec import load_goal

    spec = spec or load_goal(goal_file)[0]
    return {goal_file.resolve(), spec.name, *spec.goals}


def load_suite(path: str | Path) -> tuple[Suite, Goals]:
    """The suite and its goal files; refuses an empty glob, and held-out goals that are also train
    goals (the same file, goal name or sentence), naming them."""
    from agentkit.agents.spec import load_goal
    from agentkit.config_io import load_model_file
    from agentkit.registry.card import validate_entry_id

    path = Path(path)
    suite = load_model_file(Suite, path, what="suite", fix="see examples/improve/suite.yaml for every field.")
    validate_entry_id(f"{suite.name}-r1")

    def expand(field: str, patterns: list[str]) -> list[Path]:
        files: list[Path] = []
        for pattern in patterns:
            found = sorted(Path(p).resolve() for p in glob.glob(str(path.parent / pattern)))
            if not found:
                raise BadInputError(f"{path}: field {field!r}: {pattern!r} matches no goal file.",
                                    fix="give goal files relative to the suite file.")  # fmt: skip
            files += [f for f in found if f not in files]
        return files

    goals = Goals(expand("train", suite.train), expand("heldout", suite.heldout))
    specs = {f: load_goal(f)[0] for f in [*goals.train, *goals.heldout]}
    train_keys = {key for f in goals.train for key in goal_keys(f, specs[f])}
    overlap = sorted({specs[f].name for f in goals.heldout if goal_keys(f, specs[f]) & train_keys})
    if overlap:
        raise BadInputError(f"{path}: held-out goal(s) {', '.join(overlap)} are also train goals.",
                            fix="a held-out goal is never trained on: remove it from train (or from heldout).")  # fmt: skip
    for field, files in (("train", goals.train), ("heldout", goals.heldout)):
        stems = [f.stem for f in files]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:  # a run's folder is named by the file's stem
            raise BadInputError(f"{path}: field {field!r}: two goal files are named {', '.join(twice)}.",
                                fix="give every goal file of a split its own file name.")  # fmt: skip
    return suite, goals


# ---- the paired decision -------------------------------------------------------------------------
def paired_gain(champion: list[float], candidate: list[float]) -> dict[str, float]:
    """Per-goal success rates of both models on the same goals -> mean gain, its standard error
    (sd of the per-goal differences / sqrt n), and the gain counted in goals."""
    if len(champion) != len(candidate) or not champion:
        raise ValueError("paired_gain needs the same non-empty list of goals for both models")
    diffs = [b - a for a, b in zip(champion, candidate)]
    n = len(diffs)
    mean = sum(diffs) / n
    se = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else 0.0
    return {"goals": n, "champion_rate": sum(champion) / n, "candidate_rate": sum(candidate) / n, "gain": mean,
            "se": se, "gain_goals": sum(diffs)}  # fmt: skip


def should_promote(stats: dict[str, float], settings: PromoteSettings) -> tuple[bool, str]:
    gain, se = stats["gain"], stats["se"]
    if gain <= 0:
        return False, f"no gain ({gain:+.3f})"
    if gain < settings.min_gain_se * se:
        return False, f"gain {gain:+.3f} < {settings.min_gain_se} x SE {se:.3f}"
    if stats["gain_goals"] < settings.min_goals:
        return False, f"gain of {stats['gain_goals']:.2f} goals < min_goals {settings.min_goals}"
    return True, f"gain {gain:+.3f} >= {settings.min_gain_se} x SE {se:.3f}, {stats['gain_goals']:.2f} goals"

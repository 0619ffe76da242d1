"""A pipeline of tuning stages (RLHF: sft -> reward -> ppo) run in order from one YAML file.

A stage whose output is already registered is skipped, so a failed run continues where it
stopped; `--stage NAME` re-runs one stage alone. Each registered stage's card gets
`lineage.pipeline` naming the pipeline, its stage and the output of the stage before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentkit.config_io import load_model_file, load_yaml
from agentkit.errors import BadInputError
from agentkit.registry import ModelCard, Registry
from agentkit.tuning.config import TuneConfig


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the stage's name, as `--stage NAME` takes it")
    config: str = Field(description="its tune.yaml, relative to the pipeline file")


class PipelineSpec(BaseModel):
    """pipeline.yaml: a name and the stages, in the order they run."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the pipeline's name, recorded in each stage's lineage")
    stages: list[StageSpec] = Field(min_length=1)

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: list[StageSpec]) -> list[StageSpec]:
        names = [s.name for s in stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique; {dupes} appear more than once")
        return stages


@dataclass
class Stage:
    name: str
    config: TuneConfig
    path: Path


@dataclass
class StageResult:
    name: str
    output: str
    ran: bool  # False: already registered, skipped
    card: ModelCard


def is_pipeline_file(path: str | Path) -> bool:
    """A YAML mapping with a `stages:` key is a pipeline; anything else a single tune.yaml."""
    try:
        raw = load_yaml(path)
    except (OSError, BadInputError):
        return False  # TuneConfig.from_yaml reports the file's problem
    return isinstance(raw, dict) and "stages" in raw


class Pipeline:
    def __init__(self, spec: PipelineSpec, stages: list[Stage], path: Path) -> None:
        self.spec, self.stages, self.path = spec, stages, path

    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        """Read the pipeline and every stage's config up front: a typo in stage 3 must not wait
        for stages 1 and 2 to train."""
        path = Path(path)
        spec = load_model_file(PipelineSpec, path, what="pipeline",
                               fix="a pipeline has `name:` and `stages:` of {name, config} items.")  # fmt: skip
        stages = []
        for item in spec.stages:
            stage_path = (path.parent / item.config).resolve()
            try:
                config = TuneConfig.from_yaml(stage_path)
            except BadInputError as exc:  # its message starts with the stage's file
                raise BadInputError(f"stage {item.name!r}: {exc.message}", fix=exc.fix) from None
            stages.append(Stage(item.name, config, stage_path))
        outputs = [s.config.output for s in stages]
        if len(set(outputs)) != len(outputs):
            raise BadInputError(f"{path}: two stages write the same `output:` ({outputs}).",
                                fix="give every stage its own output id.")  # fmt: skip
        return cls(spec, stages, path)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise BadInputError(f"{self.path}: no stage named {name!r}.",
                            fix=f"use one of: {', '.join(s.name for s in self.stages)}.")  # fmt: skip

    def run(self, registry: Registry, *, only: str | None = None, resume: bool = False, progress: bool = False,
            on_stage: Callable[[str, str], None] | None = None) -> list[StageResult]:  # fmt: skip
        """Run the stages in order, skipping registered ones; `only`: re-run that stage alone
        (its earlier registration is replaced; later stages built on it must be removed first)."""
        from agentkit.tuning.trainer import train

        say = on_stage or (lambda name, message: None)
        if only is not None:
            index = self.stages.index(self.stage(only))
            missing = [s for s in self.stages[:index] if s.config.output not in registry]
            if missing:
                raise BadInputError(
                    f"stage {only!r} needs the earlier stages' outputs, and {missing[0].config.output!r} "
                    f"(stage {missing[0].name!r}) is not registered.",
                    fix=f"run the pipeline without --stage, or --stage {missing[0].name} first.",
                )
            later = [s.config.output for s in self.stages[index + 1 :] if s.config.output in registry]
            target = self.stages[index]
            if target.config.output in registry:
                if later:
                    raise BadInputError(
                        f"stage {only!r} would replace {target.config.output!r}, which the registered "
                        f"{', '.join(later)} {'was' if len(later) == 1 else 'were'} trained from.",
                        fix=" ; ".join(f"agentkit models rm {o}" for o in reversed(later)) + ", then re-run.",
                    )
                say(only, f"replacing {target.config.output}")
                registry.remove(target.config.output)
            todo = [target]
        else:
            todo = self.stages
        results = []
        for stage in todo:
            index = self.stages.index(stage)
            if stage.config.output in registry:
                say(stage.name, f"skipped: {stage.config.output} is registered")
                results.append(StageResult(stage.name, stage.config.output, False, registry.card(stage.config.output)))
                continue
            say(stage.name, f"{stage.config.method} on {stage.config.base} -> {stage.config.output}")
            card = train(stage.config, registry=registry, resume=resume, progress=progress)
            previous = self.stages[index - 1].config.output if index else None
            made_by = {"name": self.spec.name, "file": str(self.path.resolve()), "stage": stage.name, "after": previous}
            card = registry.update_card(card.id, lineage=card.lineage.model_copy(update={"pipeline": made_by}))
            results.append(StageResult(stage.name, card.id, True, card))
        return results

"""The body of POST /v1/fine_tuning/jobs (OpenAI's fields; any other is a 400 naming it) and the
tune.yaml a job becomes: `supervised` trains a LoRA on chat rows, `dpo` runs the dpo stage on pairs."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Auto = Literal["auto"]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
SUFFIX_CHARS = 40  # of the registry id's 64: the base's name and "-ft-<8 hex>" need the rest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(_Strict):
    n_epochs: Auto | PositiveInt = "auto"
    batch_size: Auto | PositiveInt = "auto"
    learning_rate_multiplier: Auto | PositiveFloat = "auto"


class DpoHyperparameters(Hyperparameters):
    beta: Auto | PositiveFloat = "auto"


class SupervisedBlock(_Strict):
    hyperparameters: Hyperparameters | None = None


class DpoBlock(_Strict):
    hyperparameters: DpoHyperparameters | None = None


class Method(_Strict):
    type: Literal["supervised", "dpo"]  # OpenAI's "reinforcement" needs graders this server does not have
    supervised: SupervisedBlock | None = None
    dpo: DpoBlock | None = None

    @model_validator(mode="after")
    def _block_of_its_type(self) -> Method:
        other = "dpo" if self.type == "supervised" else "supervised"
        if getattr(self, other) is not None:
            raise ValueError(f"method.{other} is given but method.type is {self.type!r}; "
                             f"put the hyperparameters in method.{self.type}")  # fmt: skip
        return self

    @property
    def hyperparameters(self) -> Hyperparameters:
        block = self.supervised if self.type == "supervised" else self.dpo
        if block is not None and block.hyperparameters is not None:
            return block.hyperparameters
        return Hyperparameters() if self.type == "supervised" else DpoHyperparameters()


class CreateJobRequest(_Strict):
    """POST /v1/fine_tuning/jobs."""

    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    method: Method | None = None
    hyperparameters: Hyperparameters | None = None  # OpenAI's older spelling of method.supervised's
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None

    @field_validator("integrations")
    @classmethod
    def _no_integrations(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            raise ValueError("integrations (wandb) are not supported: jobs run locally and report through "
                             "GET /v1/fine_tuning/jobs/{id}/events; leave it out")  # fmt: skip
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # OpenAI's limits, kept so that what works here also works there
        if value and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("at most 16 keys, keys up to 64 characters, values up to 512")
        return value

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> CreateJobRequest:
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError(f"give hyperparameters once, in method.{self.method.type}.hyperparameters")
        return self

    @property
    def method_type(self) -> str:
        return self.method.type if self.method is not None else "supervised"

    def resolved_method(self) -> dict[str, Any]:
        """OpenAI's `method` object with every "auto" replaced by what the job trains with: the
        defaults of `agentkit tune` (TrainConfig, DpoMethodConfig), so a job and a tune.yaml that
        leaves them out train alike."""
        from agentkit.tuning.dpo.config import DpoMethodConfig
        from agentkit.tuning.methods import get_method

        given = self.method.hyperparameters if self.method is not None else (self.hyperparameters or Hyperparameters())
        method = get_method("lora" if self.method_type == "supervised" else "dpo")

        def pick(value: Any, default: Any) -> Any:
            return default if value == "auto" else value

        hyper: dict[str, Any] = {
            "n_epochs": pick(given.n_epochs, int(method.train_default("epochs"))),
            "batch_size": pick(given.batch_size, method.train_default("batch_size")),
            "learning_rate_multiplier": pick(given.learning_rate_multiplier, 1.0),
        }
        if isinstance(given, DpoHyperparameters):
            hyper["beta"] = pick(given.beta, DpoMethodConfig.model_fields["beta"].default)
        return {"type": self.method_type, self.method_type: {"hyperparameters": hyper}}


def output_id(model_id: str, suffix: str | None, job_id: str) -> str:
    """The registry id a job registers: `<model>-ft-<suffix>-<8 hex of the job id>`, in the registry's
    alphabet (names.REGISTRY_ID: 1-64 of a-z 0-9 . _ -). OpenAI's `ft:model:org:suffix:id` has
    colons, which a registry id (a folder name) cannot; the suffix is lowercased and cut to fit."""
    short = job_id.rsplit("-", 1)[-1][:8]
    clean = re.sub(r"[^a-z0-9._-]+", "-", (suffix or "").lower()).strip("-._")[:SUFFIX_CHARS].rstrip("-._")
    tail = f"-ft-{clean}-{short}" if clean else f"-ft-{short}"
    return model_id[: 64 - len(tail)].rstrip("-._") + tail


def tune_config(*, method: dict[str, Any], base: str, adapter: str | None, train: Path, rows: int,
                valid: Path | None, seed: int, output: str, max_steps: int | None) -> dict[str, Any]:  # fmt: skip
    """The tune.yaml of a job, as a dict. `adapter`: the job's model is an adapter of `base`, which
    the job continues (lora.init_adapter; dpo starts from it). `max_steps`: the server's cap."""
    from agentkit.tuning.methods import get_method

    hyper = method[method["type"]]["hyperparameters"]
    # The cap shortens a job, never lengthens it: HF's max_steps, once set, runs that many steps
    # even past the epochs asked for. 8 rows, batch 2, 1 epoch = 4 steps; a cap of 8 leaves it at 4.
    planned = math.ceil(rows / hyper["batch_size"]) * hyper["n_epochs"]
    # OpenAI's multiplier scales the rate the method learns with by default (its train_defaults).
    rate = get_method("lora" if method["type"] == "supervised" else "dpo").train_default("learning_rate") \
        * hyper["learning_rate_multiplier"]  # fmt: skip
    # eval_fraction 0: as at OpenAI, only a validation_file is evaluated on; no rows are held back.
    data: dict[str, Any] = {"train": str(train), "format": "openai", "eval_fraction": 0, "seed": seed}
    if valid is not None:
        data["eval"] = str(valid)
    steps = {"max_steps": max_steps} if max_steps and max_steps < planned else {}
    config: dict[str, Any] = {
        "data": data,
        "train": {"epochs": hyper["n_epochs"], "batch_size": hyper["batch_size"], "learning_rate": rate,
                  "seed": seed, "logging_steps": 1, **steps},  # fmt: skip
        "output": output,
    }
    if method["type"] == "supervised":
        lora = {"init_adapter": adapter} if adapter else {}
        return {"base": base, "task": "causal_lm", "method": "lora", "lora": lora, **config}
    return {"base": adapter or base, "task": "causal_lm", "method": "dpo", "dpo": {"beta": hyper["beta"]}, **config}

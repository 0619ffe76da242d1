"""`goal.yaml` as a pydantic model (`GoalSpec`) and `load_goal`, which reports a bad file as one line
naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from agentkit.config_io import load_model_file
from agentkit.models.provider import ModelSpec


class Budgets(BaseModel):
    """Limits that end a run with status `budget_exhausted` (exit 3)."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(default=12, gt=0, description="tool calls, all goals together")
    max_tokens: int | None = Field(default=None, gt=0, description="prompt + completion tokens, all steps")
    max_seconds: float | None = Field(default=None, gt=0, description="wall-clock seconds, resumed time included")
    tool_timeout_s: float = Field(default=30.0, gt=0, description="seconds one tool call may take")
    loop_limit: int = Field(default=3, ge=2, description="stop when the same call (name + arguments) repeats this often")
    max_replans: int = Field(
        default=2, ge=0, description="strategy plan: new plans after a failed step or failing checks, per run"
    )


class FileExistsCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_exists: str = Field(description="a path inside the workspace")


class FileContainsCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_contains: str = Field(description="a path inside the workspace")
    text: str = Field(description="text the file must contain (case-sensitive)")


class CommandCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str | list[str] = Field(
        description="run in the workspace, inside the same bubblewrap sandbox as the python tool (the agent "
        "may have written what it runs); a string goes through /bin/sh"
    )
    exit_code: int = Field(default=0, description="the exit status that passes")
    timeout_s: float = Field(default=30.0, gt=0)
    memory_mb: int = Field(default=2048, ge=64, description="memory cap of the sandbox the check runs in")


def _check_kind(value: Any) -> str | None:
    # Pick the check class by its key, so an error names that class's fields, not all three.
    if isinstance(value, dict):
        return next((tag for key, tag in _CHECK_KEYS if key in value), None)
    return type(value).__name__


_CHECK_KEYS = (("file_exists", "FileExistsCheck"), ("file_contains", "FileContainsCheck"), ("command", "CommandCheck"))
Check = Annotated[
    Annotated[FileExistsCheck, Tag("FileExistsCheck")]
    | Annotated[FileContainsCheck, Tag("FileContainsCheck")]
    | Annotated[CommandCheck, Tag("CommandCheck")],
    Discriminator(
        _check_kind,
        custom_error_type="check_kind",
        custom_error_message="a check has one of the keys file_exists, file_contains or command",
    ),
]


class ToolEntry(BaseModel):
    """A tool with options: `{name: python, enabled: true, timeout_s: 10}`; options go to the tool."""

    model_config = ConfigDict(extra="allow")  # options are the tool's own; agentkit.tools validates them

    name: str


class GoalSpec(BaseModel):
    """One agent run: what to reach, with which model and tools, within which budgets."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(default="goal", description="shown in `agentkit runs list`")
    goals: Annotated[list[str], Field(min_length=1)] = Field(description="worked in order, one at a time")
    constraints: list[str] = Field(default_factory=list, description="rules shown with every goal")
    model: ModelSpec | str = Field(
        default_factory=ModelSpec,
        description="registry id, {model, adapter}, or a LangChain provider spec ('openai:gpt-4o-mini' or {provider, model})",
    )
    tools: list[str | ToolEntry] = Field(
        default_factory=lambda: ["read_file", "write_file", "list_files", "calculator"],
        description="tool names, or {name, ...options}; finish is always added",
    )
    indexes: list[str] = Field(default_factory=list, description="indexes search_index / ask_index may read")
    memory: str | None = Field(default=None, description="memory session: notes kept across runs under this name")
    budgets: Budgets = Field(default_factory=Budgets)
    workspace: str = Field(default="workspace", description="directory, relative to the goal file")
    outputs: list[str] = Field(
        default_factory=list,
        description="workspace files the run writes; removed before a fresh run so an old one cannot pass the checks",
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="workspace files (path: text) written before a fresh run: inputs an earlier run cannot have changed",
    )
    checks: list[Check] = Field(default_factory=list, description="success checks, all must pass")
    strategy: Literal["auto", "plan", "guided", "free"] = Field(
        default="auto",
        description="plan: the model writes a plan (steps, each with its intent and tool, grammar-bound to the "
        "enabled tools), acts on it step by step and re-plans when a step or a check fails. guided: each goal "
        "gets one tool (the one it names, else the model's pick) and is done when that call succeeds: what a "
        "135M model can follow. free: any tool each step until finish. auto: plan for models of at least "
        "agentkit.agents.strategy.PLAN_MIN_PARAMS parameters and remote providers, guided below (measured, see README)",
    )

    @field_validator("model", mode="before")
    @classmethod
    def _provider_string(cls, value: Any) -> Any:
        # 'openai:gpt-4o-mini' is LangChain's provider:model spelling; a bare id is the registry's.
        if isinstance(value, str) and ":" in value:
            provider, _, model = value.partition(":")
            return {"provider": provider, "model": model}
        return value

    def model_spec(self) -> ModelSpec:
        return self.model if isinstance(self.model, ModelSpec) else ModelSpec(model=self.model)

    def tool_specs(self) -> list[str | dict[str, Any]]:
        return [t if isinstance(t, str) else t.model_dump() for t in self.tools]


def load_goal(path: str | Path) -> tuple[GoalSpec, Path]:
    """(spec, resolved workspace directory) from a goal file; BadInputError names file:line and field."""
    spec = load_model_file(GoalSpec, path, what="goal", fix="correct or remove that field (see examples/goals/ for every field).")
    workspace = (Path(path).resolve().parent / spec.workspace).resolve()
    return spec, workspace

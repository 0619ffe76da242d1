"""`Agent`: goals + a chat model + tools + budgets + a workspace, run by the LangGraph loop, with
every step in `<runs>/<run-id>/trace.jsonl`; `AgentResult` is what a run returns."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentkit.agents.spec import Budgets, Check, GoalSpec, load_goal
from agentkit.agents.trace import STATE, TRACE, RunStore, TraceWriter
from agentkit.errors import BadInputError

# Statuses a run ends with, and whether it reached its goal (the CLI maps them to exit codes).
SUCCESS = ("succeeded", "finished")
STATUSES = ("succeeded", "finished", "failed", "budget_exhausted", "loop_detected", "interrupted", "error")


@dataclass
class AgentResult:
    status: str
    steps: int
    final_answer: str | None
    trace_path: Path
    run_id: str
    tokens: int
    seconds: float
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "steps": self.steps, "tokens": self.tokens,
                "seconds": round(self.seconds, 2)}  # fmt: skip


class Agent:
    """An autonomous agent: works `goals` in order with `tools`, one tool call per step.

    Example:
        ```python
        from agentkit import Agent

        agent = Agent(model="smollm2-135m-instruct", tools=["read_file", "calculator"],
                      goals=["Read numbers.txt", "Add them up"], workspace="ws", budgets={"max_steps": 6})
        result = agent.run()          # AgentResult(status, steps, final_answer, trace_path, ...)
        ```
    `model` is a registry id, a ModelSpec dict, or any LangChain chat model; `tools` are names,
    {name, ...options} dicts, or any LangChain BaseTool. `finish` is always available.
    """

    def __init__(
        self,
        *,
        model: Any = "smollm2-135m-instruct",
        tools: Sequence[Any] = ("read_file", "write_file", "list_files", "calculator"),
        goals: Sequence[str],
        constraints: Sequence[str] = (),
        budgets: Budgets | dict[str, Any] | None = None,
        workspace: str | Path = ".",
        checks: Sequence[Check | dict[str, Any]] = (),
        indexes: Sequence[str] = (),
        outputs: Sequence[str] = (),
        files: dict[str, str] | None = None,
        memory: str | None = None,
        name: str = "agent",
        strategy: str = "auto",
        runs_dir: str | Path | None = None,
        goal_file: str | Path | None = None,
    ) -> None:
        from pydantic import TypeAdapter

        if not goals:
            raise BadInputError("An agent needs at least one goal.", fix="pass goals=['...'].")
        self.model = _model_spec(model)
        self.tool_specs = list(tools)
        self.goals = [str(g) for g in goals]
        self.constraints = [str(c) for c in constraints]
        self.budgets = budgets if isinstance(budgets, Budgets) else Budgets.model_validate(budgets or {})
        self.workspace = Path(workspace).expanduser().resolve()
        self.checks: list[Check] = [TypeAdapter(Check).validate_python(c) for c in checks]
        self.indexes = tuple(indexes)
        self.outputs = list(outputs)
        self.files = dict(files or {})
        self.memory = memory
        self.name = name
        from agentkit.agents.strategy import STRATEGIES

        if strategy not in STRATEGIES:
            raise BadInputError(f"Unknown strategy {strategy!r}.", fix=f"use one of {', '.join(STRATEGIES)}.")
        self.strategy = strategy
        self.store = RunStore(runs_dir)
        self.goal_file = str(goal_file) if goal_file else None
        self.run_id: str | None = None  # set when a run starts (the CLI prints it on Ctrl-C)

    @classmethod
    def from_yaml(cls, path: str | Path, *, runs_dir: str | Path | None = None, **overrides: Any) -> Agent:
        spec, workspace = load_goal(path)
        return cls.from_spec(spec, workspace=workspace, runs_dir=runs_dir, goal_file=path, **overrides)

    @classmethod
    def from_spec(cls, spec: GoalSpec, *, workspace: Path, **overrides: Any) -> Agent:
        kwargs: dict[str, Any] = {
            "model": spec.model_spec(), "tools": spec.tool_specs(), "goals": spec.goals,
            "constraints": spec.constraints, "budgets": spec.budgets, "workspace": workspace, "checks": spec.checks,
            "indexes": spec.indexes, "outputs": spec.outputs, "files": spec.files, "memory": spec.memory,
            "name": spec.name, "strategy": spec.strategy,
        }  # fmt: skip
        kwargs.update(overrides)
        return cls(**kwargs)

    # ---- pieces built at run time (I/O and heavy imports live here, not in __init__) -------------
    def _chat_model(self) -> Any:
        from langchain_core.language_models import BaseChatModel

        if isinstance(self.model, BaseChatModel):
            return self.model
        from agentkit.models.chat_model import LocalChatModel
        from agentkit.models.provider import load_chat_model

        chat_model = load_chat_model(self.model)
        if isinstance(chat_model, LocalChatModel):
            # it loads lazily: an unknown id would surface at step 1, after the run's folder was made.
            # The adapter first, so that no base is converted for a goal that is refused anyway.
            registry = chat_model._registry()
            for entry_id in filter(None, (chat_model.adapter, chat_model.model)):
                registry.card(entry_id)
        return chat_model

    def _tools(self, chat_model: Any) -> list[Any]:
        from agentkit.tools import ToolContext, build_tools

        context = ToolContext(workspace=self.workspace, model=chat_model, indexes=self.indexes,
                              timeout_s=self.budgets.tool_timeout_s)  # fmt: skip
        specs = list(self.tool_specs)
        names = {s if isinstance(s, str) else getattr(s, "name", None) or s.get("name") for s in specs}
        if "finish" not in names:
            specs.append("finish")
        return build_tools(specs, context)

    def _model_label(self, chat_model: Any) -> str:
        from agentkit.models.chat_model import LocalChatModel
        from agentkit.models.provider import ModelSpec

        if isinstance(chat_model, LocalChatModel):  # what ran, with an alias resolved
            return ":".join(str(v) for v in ("agentkit", chat_model.model, chat_model.adapter) if v)
        if isinstance(self.model, ModelSpec):
            return ":".join(str(v) for v in (self.model.provider, self.model.model, self.model.adapter) if v)
        return type(chat_model).__name__

    # ---- running -----------------------------------------------------------------------------
    def run(self, *, resume: str | None = None) -> AgentResult:
        """Run to an end status (or continue run `resume`); the trace is complete whatever happens.
        Ctrl-C closes the trace with status "interrupted" and re-raises KeyboardInterrupt."""
        result = None
        for item in self._drive(resume):
            if isinstance(item, AgentResult):
                result = item
        assert result is not None  # _drive always ends with a result or raises
        return result

    def stream(self, *, resume: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield each step's trace record as it completes; the last item is the `end` record."""
        drive = self._drive(resume)
        try:
            for item in drive:
                yield item if isinstance(item, dict) else {"type": "end", **item.summary(),
                                                           "final_answer": item.final_answer}  # fmt: skip
        finally:
            drive.close()  # a consumer that stops early (Ctrl-C while printing) closes the run now

    def _drive(self, resume: str | None) -> Iterator[dict[str, Any] | AgentResult]:
        from agentkit.agents.graph import LoopConfig, build_graph, initial_state
        from agentkit.agents.prompting import tool_schemas
        from agentkit.agents.strategy import resolve_strategy
        from agentkit.memory.store import sqlite_checkpointer
        from agentkit.tools.confined import remove

        if resume:
            folder = self.store.existing(resume)
            run_id = resume
        # everything that can be refused is checked before anything is written: the model and its
        # adapter exist, the tools build; only then the workspace and the run's folder appear
        chat_model = self._chat_model()
        tools = self._tools(chat_model)
        strategy = resolve_strategy(self.strategy, self.model, chat_model)
        self._check_sandbox()
        if resume:
            if not self.workspace.is_dir():
                raise BadInputError(f"Workspace {self.workspace} of run {resume} is gone.",
                                    fix="restore the folder, or start a new run without --resume.")  # fmt: skip
        else:
            stale = [self._confined(output, "outputs", entry=True) for output in self.outputs]
            self._prepare_workspace()
            run_id, folder = self.store.create(self.name)
        self.run_id = run_id
        writer = TraceWriter(folder / TRACE)
        records: list[dict[str, Any]] = []
        config = LoopConfig(model=chat_model, tools=tools, goals=self.goals, constraints=self.constraints,
                            budgets=self.budgets, workspace=self.workspace, checks=self.checks, strategy=strategy,
                            on_record=lambda r: (writer.append(r), records.append(r)))  # fmt: skip
        saver = sqlite_checkpointer(folder / STATE)
        graph_config = {"configurable": {"thread_id": run_id},
                        "recursion_limit": 4 * self.budgets.max_steps + 16}  # 4 nodes per step  # fmt: skip
        state: dict[str, Any] = {}
        try:  # checks that refuse a resume write nothing to its trace
            graph = build_graph(config, checkpointer=saver)
            if resume:
                state = self._resumable(graph, graph_config, run_id)
        except BaseException:
            saver.conn.close()
            raise
        try:
            if resume:
                writer.truncate_to(int(state.get("step", 0)), state)
                writer.append({"type": "resume", "time": time.time(), "from_step": state.get("step", 0)})
                inputs: Any = None  # continue from the checkpoint
            else:
                for target in stale:  # so a stale output from an earlier run cannot pass the checks
                    remove(self.workspace, target)
                writer.append({"type": "start", "run_id": run_id, "name": self.name, "goals": self.goals,
                               "constraints": self.constraints, "model": self._model_label(chat_model),
                               "tools": [t.name for t in tools], "tool_schemas": tool_schemas(tools),
                               "workspace": str(self.workspace), "goal_file": self.goal_file,
                               "budgets": self.budgets.model_dump(), "strategy": strategy,
                               "time": time.time()})  # fmt: skip
                inputs = initial_state(self._recall())
            for update in graph.stream(inputs, graph_config, stream_mode="updates"):
                while records:
                    yield records.pop(0)
                for node_update in update.values():
                    if node_update:
                        state.update({k: v for k, v in node_update.items() if k != "history"})
            final = dict(graph.get_state(graph_config).values)
            result = self._close(writer, run_id, final, final.get("status") or "error")
            self._remember(result)
            yield result
        except (KeyboardInterrupt, GeneratorExit):
            # GeneratorExit: the caller stopped iterating (e.g. Ctrl-C landed in its loop body); the
            # run can be resumed from its last checkpoint either way.
            self._close(writer, run_id, self._latest(saver, graph_config, state), "interrupted")
            raise
        except BaseException as exc:
            latest = self._latest(saver, graph_config, state)
            self._close(writer, run_id, latest, "error", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            saver.conn.close()

    def _resumable(self, graph: Any, graph_config: dict[str, Any], run_id: str) -> dict[str, Any]:
        snapshot = graph.get_state(graph_config)
        state = dict(snapshot.values or {})
        if not state:
            raise BadInputError(f"Run {run_id} has no saved state to resume.", fix="start a new run.")
        if state.get("status"):
            raise BadInputError(f"Run {run_id} already ended ({state['status']}).", fix="start a new run.")
        start = next((r for r in self.store.records(run_id) if r["type"] == "start"), {})
        if start.get("goals") != self.goals:
            raise BadInputError(f"Run {run_id} was started with other goals ({start.get('goals')}).",
                                fix="resume with the goal file the run was started with.")  # fmt: skip
        return state

    # ---- memory: one line per earlier run of this session, in $AGENTKIT_HOME/memory/sessions.sqlite ----
    def _recall(self, last: int = 3) -> list[str]:
        if not self.memory:
            return []
        from agentkit.memory.store import ConversationStore

        return [f"earlier run: {m.content}" for m in ConversationStore().messages(self.memory)[-last:]]

    def _remember(self, result: AgentResult) -> None:
        if not self.memory:
            return
        from langchain_core.messages import AIMessage

        from agentkit.memory.store import ConversationStore

        answer = (result.final_answer or "")[:200]
        ConversationStore().append(self.memory, [AIMessage(f"{result.status} in {result.steps} steps: {answer}")])

    def _check_sandbox(self) -> None:
        """`command` checks run in the python tool's sandbox: without one, the goal is refused up front."""
        from agentkit.agents.spec import CommandCheck
        from agentkit.tools.sandbox import sandbox_problem

        if any(isinstance(c, CommandCheck) for c in self.checks) and (problem := sandbox_problem()):
            raise BadInputError(f"checks: {problem[0]}", fix=problem[1])

    def _confined(self, relative: str, field: str, *, entry: bool = False) -> Path:
        from agentkit.tools.confined import confine, confine_entry
        from agentkit.tools.registry import ToolError

        try:
            return (confine_entry if entry else confine)(self.workspace, relative)
        except ToolError as exc:
            raise BadInputError(f"{field}: {exc.message}", fix="use paths relative to the workspace.") from None

    def _prepare_workspace(self) -> None:
        """Create the workspace (a goal that only writes needs no inputs) and write `files`, the goal's
        inputs, each through the same confined writer as `write_file`: a link planted in the folder
        (by an earlier run's python tool, or in a copied input folder) is never written through."""
        from agentkit.tools.confined import write_bytes
        from agentkit.tools.registry import ToolError

        targets = {relative: self._confined(relative, "files") for relative in self.files}
        self.workspace.mkdir(parents=True, exist_ok=True)
        for relative, text in self.files.items():
            try:
                write_bytes(self.workspace, targets[relative], text.encode("utf-8"))
            except (ToolError, OSError) as exc:
                reason = exc.one_line() if isinstance(exc, ToolError) else exc.strerror or str(exc)
                raise BadInputError(f"files: {relative!r} cannot be written: {reason}",
                                    fix="give input paths inside the workspace, through no symlink.") from None

    @staticmethod
    def _latest(saver: Any, graph_config: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
        try:
            checkpoint = saver.get_tuple(graph_config)
            return dict(checkpoint.checkpoint["channel_values"]) if checkpoint else fallback
        except Exception:  # noqa: BLE001 -- closing the trace must not fail on a broken checkpoint
            return fallback

    def _close(self, writer: TraceWriter, run_id: str, state: dict[str, Any], status: str,
               error: str | None = None) -> AgentResult:  # fmt: skip
        result = AgentResult(
            status=status, steps=int(state.get("step", 0)), final_answer=state.get("final_answer"),
            trace_path=writer.path, run_id=run_id, tokens=int(state.get("tokens", 0)),
            seconds=float(state.get("seconds", 0.0)), checks=list(state.get("checks") or []),
        )  # fmt: skip
        record = {"type": "end", **result.summary(), "final_answer": result.final_answer,
                  "checks": result.checks, "time": time.time()}  # fmt: skip
        if error:
            record["error"] = error
        writer.append(record)
        return result


def _model_spec(model: Any) -> Any:
    """A registry id, 'provider:model' or a spec dict -> ModelSpec; a chat model object stays as is."""
    from agentkit.models.provider import ModelSpec

    if isinstance(model, str):
        provider, sep, name = model.partition(":")
        return ModelSpec(provider=provider, model=name) if sep else ModelSpec(model=model)
    if isinstance(model, dict):
        return ModelSpec.model_validate(model)
    return model

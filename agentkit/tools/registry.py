"""The tool registry of agents: one validating `register_tool`, the `agentkit.tools` entry-point group,
`build_tools` (goal.yaml `tools:` -> LangChain tools) and `invoke_tool`, which never raises."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from agentkit.errors import AgentkitError, BadInputError
from agentkit.extension import NAME, check_new_name

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

ENTRY_POINT_GROUP = "agentkit.tools"
MAX_OUTPUT_CHARS = 4000  # what one observation may add to a small model's context (~1k tokens)
# The modules whose import registers the built-in tools (imported on first lookup, not at import time,
# so `import agentkit.tools` stays light and the modules can import this one).
_BUILTIN_MODULES = (
    "agentkit.tools.workspace",
    "agentkit.tools.calculator",
    "agentkit.tools.index_tools",
    "agentkit.tools.python_code",
    "agentkit.tools.http_fetch",
    "agentkit.tools.model_tools",
    "agentkit.tools.finish",
)
# Keys every `tools:` entry may carry besides the factory's own options.
_COMMON_KEYS = ("name", "enabled", "tool_name", "description")


class NoOptions(BaseModel):
    """A tool without options."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ToolContext:
    """What a tool may touch in one agent run."""

    workspace: Path  # resolved absolute dir; every file tool is confined to it
    home: Path | None = None  # registry root (None: $AGENTKIT_HOME)
    model: Any = None  # the agent's LangChain chat model (ask_model's default model)
    indexes: tuple[str, ...] = ()  # index names search_index / ask_index may open
    timeout_s: float = 30.0  # default per-call limit

    def __post_init__(self) -> None:
        object.__setattr__(self, "workspace", Path(self.workspace).expanduser().resolve())
        object.__setattr__(self, "indexes", tuple(self.indexes))


@dataclass(frozen=True)
class ToolFactory:
    """A named way to build a LangChain tool from a run's context and the goal's options for it."""

    name: str  # lower_snake_case, unique
    build: Callable[[ToolContext, BaseModel], BaseTool]  # (context, validated options) -> tool
    description: str
    options: type[BaseModel] = NoOptions  # pydantic, extra="forbid"
    off_by_default: bool = False  # python, http_fetch: the goal must say `enabled: true`


class ToolError(AgentkitError):
    """A tool call that failed in a way the agent should see: `output` is what the tool printed."""

    def __init__(self, message: str, *, output: str = "", fix: str | None = None) -> None:
        self.output = output
        super().__init__(message, fix=fix)


_FACTORIES: dict[str, ToolFactory] = {}
_builtins_loaded = False
_SHADOW_CHECKED: set[str] = set()  # built-in names already checked for a clashing entry point


def register_tool(factory: ToolFactory) -> ToolFactory:
    """Add a tool factory; its name must be lower_snake_case and not taken."""
    if not isinstance(factory, ToolFactory):
        raise BadInputError(
            f"register_tool got {type(factory).__name__}, not a ToolFactory.",
            fix="wrap the tool: register_tool(ToolFactory(name=..., build=..., description=...)).",
        )
    check_new_name("tool", factory.name, _FACTORIES)
    if not (isinstance(factory.options, type) and issubclass(factory.options, BaseModel)):
        raise BadInputError(f"Tool {factory.name!r}: options must be a pydantic model class.",
                            fix="pass options=MyOptions (a BaseModel with extra='forbid').")  # fmt: skip
    _FACTORIES[factory.name] = factory
    return factory


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        import importlib

        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _load_entry_point(ep: Any) -> ToolFactory:
    try:
        factory = ep.load()
    except Exception as exc:  # noqa: BLE001 -- a broken plugin must name itself, whatever it raised
        raise BadInputError(
            f"Tool entry point {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
            fix="fix or uninstall the package that declares it in the 'agentkit.tools' group.",
        ) from None
    if not isinstance(factory, ToolFactory) or factory.name != ep.name:
        raise BadInputError(
            f"Tool entry point {ep.name!r} ({ep.value}) must load a ToolFactory named {ep.name!r}.",
            fix="point the entry point at a ToolFactory whose name is the entry point's name.",
        )
    if factory.name not in _FACTORIES:
        register_tool(factory)
    return _FACTORIES[factory.name]


def tool_names() -> list[str]:
    """Every tool a goal can name: the built-ins, registered ones and the entry points."""
    _load_builtins()
    return sorted(set(_FACTORIES) | {ep.name for ep in _entry_points()})


def get_factory(name: str) -> ToolFactory:
    """The factory for `name`, loading its entry point on first use."""
    _load_builtins()
    if name in _FACTORIES:
        builtin = getattr(_FACTORIES[name].build, "__module__", None) in _BUILTIN_MODULES
        if builtin and name not in _SHADOW_CHECKED:
            _SHADOW_CHECKED.add(name)
            for ep in _entry_points():
                if ep.name == name:  # the built-in wins; say so instead of ignoring the plugin silently
                    warnings.warn(
                        f"Tool entry point {name!r} ({ep.value}) is ignored: {name!r} is a built-in tool. "
                        "Rename the entry point and its ToolFactory in the package that declares it.",
                        stacklevel=2,
                    )
                    break
        return _FACTORIES[name]
    for ep in _entry_points():
        if ep.name == name:
            return _load_entry_point(ep)
    raise BadInputError(f"Unknown tool {name!r}.", fix=f"use one of: {', '.join(tool_names())}.")


def _allowed_fields(factory: ToolFactory) -> str:
    return ", ".join([*_COMMON_KEYS, *factory.options.model_fields])


def _build_one(spec: str | Mapping[str, Any], where: str, context: ToolContext) -> BaseTool | None:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise BadInputError(
            f"{where} must be a tool name or a mapping with a `name`, got {spec!r}.",
            fix="write `- calculator` or `- {name: python, enabled: true}`.",
        )
    factory = get_factory(spec["name"])
    enabled = spec.get("enabled")
    if enabled not in (None, True, False):
        raise BadInputError(
            f"{where}.enabled must be true or false, got {enabled!r}.", fix="write `enabled: true`."
        )
    raw = {k: v for k, v in spec.items() if k not in _COMMON_KEYS}
    try:  # validated even when disabled: a typo should not wait until someone enables the tool
        options = factory.options.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in e['loc']) or '(options)'}: {e['msg']}" for e in exc.errors()
        )
        raise BadInputError(
            f"Bad options for tool {factory.name!r}: {problems}.",
            fix=f"allowed fields for {factory.name!r}: {_allowed_fields(factory)}.",
        ) from None
    if enabled is False:
        return None
    if factory.off_by_default and enabled is not True:
        raise BadInputError(
            f"tool {factory.name!r} is off by default ({factory.description}); {where} does not enable it.",
            fix="add `enabled: true` under it in tools:",
        )
    try:
        tool = factory.build(context, options)
    except BadInputError as exc:  # name the entry: a goal may list the same tool twice
        raise BadInputError(f"{where} ({factory.name}): {exc.message}", fix=exc.fix) from None
    updates = {k: spec[k] for k in ("tool_name", "description") if spec.get(k) is not None}
    if "tool_name" in updates and not NAME.fullmatch(str(updates["tool_name"])):
        raise BadInputError(f"{where}.tool_name {updates['tool_name']!r} is not lower_snake_case.",
                            fix="use letters, digits and _, starting with a letter.")  # fmt: skip
    if updates:  # a copy: a factory may hand out one shared tool (the calculator does)
        tool = tool.model_copy(
            update={("name" if k == "tool_name" else k): str(v) for k, v in updates.items()}
        )
    return tool


def build_tools(specs: Sequence[str | Mapping[str, Any] | BaseTool], context: ToolContext) -> list[BaseTool]:
    """goal.yaml `tools:` -> LangChain tools: `"calculator"`, `{"name": "python", "enabled": true,
    "timeout_s": 5}`, or any LangChain `BaseTool` (passed through). `enabled: false` drops an entry;
    `tool_name` / `description` rename or re-describe the built tool (e.g. two `classify` adapters)."""
    from langchain_core.tools import BaseTool

    tools: list[BaseTool] = []
    for i, spec in enumerate(specs):
        tool = spec if isinstance(spec, BaseTool) else _build_one(spec, f"tools[{i}]", context)
        if tool is None:
            continue
        if any(t.name == tool.name for t in tools):
            raise BadInputError(f"tools[{i}]: a second tool named {tool.name!r}.",
                                fix="remove the duplicate or give one a `tool_name:`.")  # fmt: skip
        tools.append(tool)
    return tools


@dataclass
class ToolOutcome:
    """One tool call, as the agent loop records it: `output` is what the model observes."""

    ok: bool
    output: str
    error: str | None
    seconds: float


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)  # a ToolMessage or an AIMessage
    if isinstance(content, str):
        return content
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """The head of `text`, with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated: {len(text) - limit} more characters not shown]"


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, AgentkitError):
        text = exc.one_line()
    elif isinstance(exc, ValidationError):
        text = "bad arguments: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
    else:
        text = f"{type(exc).__name__}: {exc}"
    return truncate(" ".join(text.split()), 500)


def tool_timeout(tool: BaseTool, default: float) -> float:
    """The wall-clock limit for one call of `tool`: its own (`metadata["timeout_s"]`, set by tools that
    enforce a limit themselves, plus a margin) or `default`."""
    value = (tool.metadata or {}).get("timeout_s")
    return float(value) if isinstance(value, (int, float)) and value > 0 else default


def invoke_tool(tool: BaseTool, args: dict[str, Any], *, timeout_s: float) -> ToolOutcome:
    """Call `tool` with `args`; never raises. Validation errors, exceptions, timeouts, and a reply that
    starts with the tool's `metadata["error_prefix"]` (the calculator answers "error: ...") become
    ok=False with a one-line error. A call still running after `timeout_s` is abandoned in its daemon
    thread so the agent loop goes on. A tool that enforces a limit of its own (python, http_fetch,
    ask_model, ask_index: `metadata["timeout_s"]`, from the goal's options) gets that limit instead,
    so a goal's `timeout_s: 60` for python is not cut at the run's default."""
    timeout_s = tool_timeout(tool, timeout_s)
    start = time.monotonic()
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = tool.invoke(args if isinstance(args, dict) else {"input": args})
        except BaseException as exc:  # noqa: BLE001 -- everything becomes an observation
            box["error"] = exc

    worker = threading.Thread(target=call, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    seconds = time.monotonic() - start
    if worker.is_alive():
        return ToolOutcome(
            False, "", f"tool {tool.name!r} timed out after {timeout_s:g}s and was abandoned.", seconds
        )
    if "error" in box:
        exc = box["error"]
        return ToolOutcome(False, truncate(getattr(exc, "output", "") or ""), _one_line(exc), seconds)
    output = truncate(_text(box.get("value")))
    prefix = (tool.metadata or {}).get("error_prefix")
    if isinstance(prefix, str) and prefix and output.startswith(prefix):
        # The reply is the error: kept once, as the error (the agent's observation would repeat it).
        return ToolOutcome(False, "", truncate(" ".join(output[len(prefix) :].split()), 500), seconds)
    return ToolOutcome(True, output, None, seconds)

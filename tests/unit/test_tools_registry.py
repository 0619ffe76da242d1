"""register_tool, build_tools and the entry-point group; invoke_tool on tools that raise, hang,
get bad arguments or talk too much. The tools here are fakes: the logic under test is the registry."""

from __future__ import annotations

import importlib.metadata
import threading
import time
from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool, tool
from pydantic import BaseModel, ConfigDict

from agentkit.errors import BadInputError
from agentkit.tools import (
    ToolContext,
    ToolFactory,
    build_tools,
    get_factory,
    invoke_tool,
    register_tool,
    tool_names,
    tool_timeout,
)
from agentkit.tools import registry as tool_registry

BUILTINS = {"read_file", "write_file", "list_files", "calculator", "search_index", "ask_index", "python",
            "http_fetch", "ask_model", "classify", "finish"}  # fmt: skip


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tools registered by a test vanish after it."""
    tool_names()  # load the built-ins into the real table first
    monkeypatch.setattr(tool_registry, "_FACTORIES", dict(tool_registry._FACTORIES))


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path)


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: str = ">"


def _build_echo(context: ToolContext, options: EchoOptions) -> StructuredTool:
    def echo(text: str) -> str:
        """Echo the text."""
        return f"{options.prefix} {text}"

    return StructuredTool.from_function(echo)


FAKE_FACTORY = ToolFactory("fake_echo", _build_echo, "echo text back", EchoOptions)


def test_builtins_are_listed() -> None:
    assert BUILTINS <= set(tool_names())


def test_build_by_name_and_with_options(context: ToolContext) -> None:
    register_tool(FAKE_FACTORY)
    tools = build_tools(["calculator", {"name": "fake_echo", "prefix": "#"}], context)
    assert [t.name for t in tools] == ["calculator", "echo"]
    assert tools[1].invoke({"text": "hi"}) == "# hi"


def test_langchain_tool_passes_through(context: ToolContext) -> None:
    @tool
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    assert build_tools([shout], context) == [shout]


def test_unknown_tool_lists_the_names(context: ToolContext) -> None:
    with pytest.raises(BadInputError, match="Unknown tool 'calculater'") as err:
        build_tools(["calculater"], context)
    assert "calculator" in err.value.fix and "read_file" in err.value.fix


def test_unknown_option_field_is_named_with_allowed_fields(context: ToolContext) -> None:
    with pytest.raises(BadInputError) as err:
        build_tools(["calculator", {"name": "read_file", "max_char": 10}], context)
    assert "tools[1].max_char" in err.value.message
    assert "max_chars" in err.value.fix


def test_bad_option_value_is_named(context: ToolContext) -> None:
    with pytest.raises(BadInputError, match=r"tools\[0\]\.timeout_s"):
        build_tools([{"name": "python", "enabled": True, "timeout_s": -1}], context)


@pytest.mark.parametrize("name", ["python", "http_fetch"])
def test_off_by_default_needs_enabled(context: ToolContext, name: str) -> None:
    with pytest.raises(BadInputError, match=f"tool '{name}' is off by default") as err:
        build_tools([name], context)
    assert err.value.fix == "add `enabled: true` under it in tools:"
    assert [t.name for t in build_tools([{"name": name, "enabled": True}], context)] == [name]


def test_enabled_false_drops_the_tool(context: ToolContext) -> None:
    assert [t.name for t in build_tools(["calculator", {"name": "finish", "enabled": False}], context)] == [
        "calculator"
    ]


def test_tool_name_and_description_overrides(context: ToolContext) -> None:
    tools = build_tools(
        [{"name": "read_file", "tool_name": "read_notes", "description": "Read the notes."}], context
    )
    assert (tools[0].name, tools[0].description) == ("read_notes", "Read the notes.")


def test_two_tools_with_one_name_are_refused(context: ToolContext) -> None:
    with pytest.raises(BadInputError, match="second tool named 'calculator'"):
        build_tools(["calculator", "calculator"], context)


def test_register_rejects_duplicates_and_bad_names() -> None:
    register_tool(FAKE_FACTORY)
    with pytest.raises(BadInputError, match="already registered") as err:
        register_tool(ToolFactory("fake_echo", _build_echo, "another echo"))
    assert "rename" in err.value.fix
    with pytest.raises(BadInputError, match="already registered"):
        register_tool(ToolFactory("calculator", _build_echo, "mine"))
    with pytest.raises(BadInputError, match="lower_snake_case"):
        register_tool(ToolFactory("Fake-Echo", _build_echo, "bad name"))
    with pytest.raises(BadInputError, match="not a ToolFactory"):
        register_tool(_build_echo)  # type: ignore[arg-type]


def _fake_entry_points(*eps: importlib.metadata.EntryPoint):
    def entry_points(**select: str) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == select.get("group")]

    return entry_points


def test_fake_entry_point_is_discovered_and_built(
    monkeypatch: pytest.MonkeyPatch, context: ToolContext
) -> None:
    ep = importlib.metadata.EntryPoint("fake_echo", f"{__name__}:FAKE_FACTORY", "agentkit.tools")
    other = importlib.metadata.EntryPoint("not_a_tool", f"{__name__}:FAKE_FACTORY", "other.group")
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points(ep, other))
    assert "fake_echo" in tool_names() and "not_a_tool" not in tool_names()
    assert get_factory("fake_echo") is FAKE_FACTORY
    assert build_tools([{"name": "fake_echo", "prefix": "!"}], context)[0].invoke({"text": "x"}) == "! x"


def test_fake_entry_point_named_like_a_builtin_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, context: ToolContext
) -> None:
    from agentkit.tools import registry

    clash = importlib.metadata.EntryPoint("calculator", f"{__name__}:FAKE_FACTORY", "agentkit.tools")
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points(clash))
    monkeypatch.setattr(registry, "_SHADOW_CHECKED", set())
    with pytest.warns(UserWarning, match=r"'calculator' \(.*FAKE_FACTORY\) is ignored: 'calculator' is a built-in"):
        calc = build_tools(["calculator"], context)[0]
    assert calc.invoke({"expression": "6 * 7"}) == "42"  # the built-in, not the plugin


def test_fake_entry_point_that_is_broken_names_itself(
    monkeypatch: pytest.MonkeyPatch, context: ToolContext
) -> None:
    missing = importlib.metadata.EntryPoint("fake_missing", "no_such_module_xyz:FACTORY", "agentkit.tools")
    wrong = importlib.metadata.EntryPoint("fake_wrong", f"{__name__}:FAKE_FACTORY", "agentkit.tools")
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points(missing, wrong))
    with pytest.raises(BadInputError, match="'fake_missing' .* failed to load"):
        build_tools(["fake_missing"], context)
    with pytest.raises(BadInputError, match="must load a ToolFactory named 'fake_wrong'"):
        build_tools(["fake_wrong"], context)


# ---- invoke_tool ----------------------------------------------------------------------------------
def test_invoke_ok_and_error_convention(context: ToolContext) -> None:
    calc = build_tools(["calculator"], context)[0]
    ok = invoke_tool(calc, {"expression": "6 * 7"}, timeout_s=5)
    assert (ok.ok, ok.output, ok.error) == (True, "42", None)
    bad = invoke_tool(calc, {"expression": "1 / 0"}, timeout_s=5)
    assert not bad.ok and bad.error.startswith("Division by zero")
    assert bad.output == ""  # said once, as the error: the agent's observation is "error: <it>"


def test_fake_tool_that_raises_becomes_an_observation() -> None:
    @tool
    def explode(text: str) -> str:
        """Always fails."""
        raise RuntimeError("boom\nsecond line")

    out = invoke_tool(explode, {"text": "x"}, timeout_s=5)
    assert not out.ok and out.error == "RuntimeError: boom second line"


def test_bad_arguments_become_an_observation(context: ToolContext) -> None:
    calc = build_tools(["calculator"], context)[0]
    out = invoke_tool(calc, {"expr": "1 + 1"}, timeout_s=5)
    assert not out.ok and "expression" in out.error and "\n" not in out.error


def test_fake_tool_that_hangs_is_abandoned_after_the_timeout() -> None:
    release = threading.Event()

    @tool
    def hang(text: str) -> str:
        """Never returns (until the test releases it)."""
        release.wait(60)
        return "late"

    start = time.monotonic()
    out = invoke_tool(hang, {"text": "x"}, timeout_s=0.5)
    elapsed = time.monotonic() - start
    release.set()
    assert not out.ok and "timed out after 0.5s" in out.error
    assert 0.5 <= elapsed < 10.0  # abandoned, not waited for (the tool would block 60 s)


def test_long_output_is_truncated_with_a_note() -> None:
    @tool
    def talk(n: int) -> str:
        """Returns n characters."""
        return "x" * n

    out = invoke_tool(talk, {"n": 10_000}, timeout_s=5)
    assert out.ok and len(out.output) < 4_100 and "truncated: 6000 more characters" in out.output
    assert invoke_tool(talk, {"n": 4000}, timeout_s=5).output == "x" * 4000


def test_non_string_results_are_json(context: ToolContext) -> None:
    @tool
    def labels(text: str) -> dict:
        """Returns a dict."""
        return {"label": "pos", "score": 0.9}

    assert invoke_tool(labels, {"text": "x"}, timeout_s=5).output == '{"label": "pos", "score": 0.9}'


def test_tool_timeout_reads_the_tools_own_limit(context: ToolContext) -> None:
    python, calc = build_tools([{"name": "python", "enabled": True, "timeout_s": 3}, "calculator"], context)
    assert tool_timeout(python, 30.0) == 8.0  # its own 3 s + a 5 s margin
    assert tool_timeout(calc, 30.0) == 30.0


def test_a_file_that_says_error_is_not_a_failure(context: ToolContext) -> None:
    (context.workspace / "log.txt").write_text("error: disk full (a line from an old log)")
    read = build_tools(["read_file"], context)[0]
    out = invoke_tool(read, {"path": "log.txt"}, timeout_s=5)
    assert out.ok and out.output.startswith("error: disk full")


def test_renaming_does_not_touch_the_shared_tool(context: ToolContext) -> None:
    from agentkit.tools.calculator import calculator

    renamed = build_tools([{"name": "calculator", "tool_name": "calc"}], context)[0]
    assert (renamed.name, calculator.name) == ("calc", "calculator")
    assert invoke_tool(renamed, {"expression": "2 + 2"}, timeout_s=5).output == "4"


def test_fake_tool_with_its_own_limit_gets_that_limit() -> None:
    release = threading.Event()

    def nap(seconds: float) -> str:
        """Sleeps."""
        release.wait(seconds)
        return "awake"

    patient = StructuredTool.from_function(nap, metadata={"timeout_s": 5.0})
    assert invoke_tool(patient, {"seconds": 0.3}, timeout_s=0.1).output == "awake"  # not cut at 0.1 s
    start = time.monotonic()
    out = invoke_tool(patient, {"seconds": 60}, timeout_s=120)
    release.set()
    # cut at its own 5 s, not the caller's 120 s (nor the 60 s it would have slept)
    assert not out.ok and "timed out after 5s" in out.error and time.monotonic() - start < 30


def test_disabled_entries_are_still_validated(context: ToolContext) -> None:
    with pytest.raises(BadInputError, match=r"tools\[0\]\.timeout"):
        build_tools([{"name": "python", "enabled": False, "timeout": 5}], context)
    with pytest.raises(BadInputError, match=r"tools\[0\]\.enabled must be true or false"):
        build_tools([{"name": "python", "enabled": "yes"}], context)


def test_build_errors_name_the_entry(context: ToolContext) -> None:
    with pytest.raises(
        BadInputError, match=r"tools\[1\] \(search_index\): tool 'search_index' needs an index"
    ):
        build_tools(["calculator", "search_index"], context)


def test_option_values_are_checked_before_anything_loads(context: ToolContext) -> None:
    with pytest.raises(BadInputError, match=r"tools\[0\]\.mode") as err:
        build_tools([{"name": "search_index", "mode": "fuzzy"}], context)
    assert "index" in err.value.fix  # the allowed fields, named

from __future__ import annotations

import pytest

from agentkit.errors import BadInputError
from agentkit.tools.calculator import calculator, evaluate


@pytest.mark.parametrize(
    ("expr", "value"),
    [("23 * 19", 437), ("(4 + 5) / 3", 3), ("2 ** 10", 1024), ("{12} * 7 =", 84), ("sqrt(16)", 4), ("-3 + 1", -2)],
)
def test_evaluate(expr: str, value: float) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", ["__import__('os')", "9 ** 9 ** 9", "1 / 0", "x + 1", "1 +"])
def test_refuses_unsafe_or_bad(expr: str) -> None:
    with pytest.raises(BadInputError):
        evaluate(expr)


def test_tool_reports_errors_as_text() -> None:
    assert calculator.invoke({"expression": "1 / 0"}).startswith("error: Division by zero")
    assert calculator.invoke({"expression": "6*7"}) == "42"


@pytest.mark.parametrize(
    "expr",
    [
        "((9**999)**999)**999",  # each exponent allowed, the nested result ~10**9 digits
        "(99999999999**999)**999",
        "((2**1000)**10)*((2**1000)**10)",  # a product of two allowed numbers past the bound
        "10.0**400",  # a float overflow
        "exp(1000)",
        "1e308*10",  # inf
        "9" * 5000 + " + 1",  # a literal past Python's int-string limit
        "sqrt()",
        "sqrt(-1)",
        "(-8)**0.5",  # a complex result
        "round(1, -10**7)",  # CPython computes 10**(10**7) for this, holding the GIL (~14 s)
        "round(1, 2.5)",
    ],
)
def test_refuses_results_too_large_or_undefined_at_once(expr: str) -> None:
    """Evaluation holds the GIL, so no timeout could abandon a huge computation: each of these must be
    refused before it is computed, as one short line (no traceback, no 5,000-character echo)."""
    import time

    start = time.perf_counter()
    with pytest.raises(BadInputError) as info:
        evaluate(expr)
    assert time.perf_counter() - start < 1.0  # refused up front; the nested power alone would run for hours
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_tool_returns_at_once_on_a_huge_power_through_invoke_tool() -> None:
    """The probe's case: a 3 s tool timeout cannot stop a computation that holds the GIL."""
    import time

    from agentkit.tools import ToolContext, build_tools, invoke_tool

    (tool,) = build_tools(["calculator"], ToolContext("."))
    start = time.perf_counter()
    out = invoke_tool(tool, {"expression": "((9**999)**999)**999"}, timeout_s=3)
    assert not out.ok and "digits" in out.error
    assert time.perf_counter() - start < 2.0


def test_large_but_bounded_results_still_work() -> None:
    assert evaluate("(2**1000)*(2**1000)") == 2**2000
    assert evaluate("(-2)**999") == -(2**999)
    assert evaluate("2 ** -2") == 0.25
    assert evaluate("round(3.14159, 2)") == 3.14 and evaluate("round(1234, -2)") == 1200

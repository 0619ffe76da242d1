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

"""A calculator tool that evaluates arithmetic safely: an AST walk over numbers and operators,
never `eval`. It runs in the agent's process and holds the GIL while it computes, so no timeout can
abandon it: the size of every result is bounded *before* it is computed."""

from __future__ import annotations

import ast
import math
import operator

from langchain_core.tools import tool

from agentkit.errors import BadInputError
from agentkit.tools.registry import ToolFactory, register_tool

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "log": math.log, "exp": math.exp}
_MAX_EXPONENT = 1000
# Integers stay under 2**10_000 (~3,000 digits): a product of two such numbers takes microseconds,
# and str() stays under Python's 4,300-digit conversion limit. Bounding the exponent alone is not
# enough: ((9**999)**999)**999 nests allowed exponents into a number of ~10**9 digits.
_MAX_BITS = 10_000
_MAX_ROUND_DIGITS = 300


def _short(expression: str) -> str:
    """The expression as error messages quote it: one line, at most 80 characters."""
    return expression if len(expression) <= 80 else expression[:77] + "..."


def _too_big(expression: str) -> BadInputError:
    return BadInputError(f"The result of {_short(expression)!r} would have more than {_MAX_BITS * 3 // 10} digits.",
                         fix="use smaller numbers; the calculator is for everyday arithmetic.")  # fmt: skip


def _result_bits(op: ast.operator, left: float | int, right: float | int) -> int:
    """An upper bound on the bits of `left op right` for integers (0 where floats are involved:
    a float result overflows to an error or inf at once, it never grows)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return 0
    if isinstance(op, ast.Pow):
        return left.bit_length() * max(right, 0)
    if isinstance(op, ast.Mult):
        return left.bit_length() + right.bit_length()
    return max(left.bit_length(), right.bit_length()) + 1


def evaluate(expression: str) -> float | int:
    """Evaluate `expression` (numbers, + - * / // % **, parentheses, sqrt/abs/round/log/exp)."""
    # Small models sometimes wrap numbers in braces or add '=': '{12} * 7 =' means 12 * 7.
    cleaned = expression.replace("{", "(").replace("}", ")").replace("×", "*").replace("^", "**")
    cleaned = cleaned.strip().rstrip("=").strip()
    try:
        tree = ast.parse(cleaned, mode="eval")
    except SyntaxError:
        raise BadInputError(
            f"Cannot parse {_short(expression)!r} as arithmetic.", fix="use numbers and + - * / ** ( )."
        ) from None

    def walk(node: ast.AST) -> float | int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise BadInputError(f"Exponent {right} is too large.", fix=f"keep exponents <= {_MAX_EXPONENT}.")
            if _result_bits(node.op, left, right) > _MAX_BITS:
                raise _too_big(expression)
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            args = [walk(a) for a in node.args]
            # round(1, -10**9) makes CPython compute 10**(10**9) while holding the GIL
            if node.func.id == "round" and len(args) > 1 and not (
                isinstance(args[1], int) and abs(args[1]) <= _MAX_ROUND_DIGITS
            ):
                raise BadInputError(f"round()'s digits must be a whole number within ±{_MAX_ROUND_DIGITS}.",
                                    fix="e.g. round(3.14159, 2).")  # fmt: skip
            return _FUNCS[node.func.id](*args)
        raise BadInputError(
            f"Unsupported element {ast.dump(node)[:40]} in {_short(expression)!r}.",
            fix="use numbers, + - * / // % **, parentheses and sqrt/abs/round/log/exp.",
        )

    try:
        value = walk(tree)
    except BadInputError:
        raise
    except ZeroDivisionError:
        raise BadInputError(f"Division by zero in {_short(expression)!r}.", fix="check the divisor.") from None
    except OverflowError:  # float ** float, exp(1000): too large for a float
        raise BadInputError(f"The result of {_short(expression)!r} is too large.", fix="use smaller numbers.") from None
    except (TypeError, ValueError) as exc:  # sqrt(), sqrt(-1), log(0), a complex result
        raise BadInputError(f"Cannot evaluate {_short(expression)!r}: {exc}.",
                            fix="give each function one number in its domain, e.g. sqrt(16).") from None
    if isinstance(value, complex):  # (-8) ** 0.5
        raise BadInputError(f"{_short(expression)!r} has no real result.", fix="use real numbers, e.g. sqrt(8).")
    if isinstance(value, float) and not math.isfinite(value):  # 1e308 * 10
        raise BadInputError(f"The result of {_short(expression)!r} is too large.", fix="use smaller numbers.")
    return int(value) if isinstance(value, float) and value.is_integer() else value


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 23 * 19 or (4 + 5) / 3 and return the result."""
    try:
        return str(evaluate(expression))
    except BadInputError as exc:
        return f"error: {exc.one_line()}"


def _build(context: object, options: object) -> object:
    # a copy that tells invoke_tool how this tool reports a failure (the tool itself stays as it was)
    return calculator.model_copy(update={"metadata": {"error_prefix": "error: "}})


register_tool(ToolFactory("calculator", _build, "evaluate arithmetic"))

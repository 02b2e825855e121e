"""A safe calculator: arithmetic parsed with `ast` and evaluated node by node over a whitelist; no
`eval`, no names but the listed functions and constants, and bounds on the expression's length, its
number of nodes, exponents and the size of integers, so that no input can hang the service."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from bentos.tools.errors import InvalidArguments

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_EXPONENT = 1000
MAX_INT_BITS = 4096  # about 1233 decimal digits

PARAM = "arguments.expression"
MAX_ROUND_DIGITS = 100


def _round(value: float, ndigits: int = 0) -> int | float:
    # round(12345, -10**300) would compute 10**(10**300).
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise TypeError(f"round's digits must be an integer within +-{MAX_ROUND_DIGITS}")
    return round(value, ndigits) if ndigits else round(value)


_FUNCTIONS: dict[str, Callable[..., int | float]] = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "abs": abs,
    "round": _round,
    "floor": math.floor,
    "ceil": math.ceil,
    "min": min,
    "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
PARAMETERS = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EXPRESSION_CHARS,
            "description": "Arithmetic: + - * / // % ** and parentheses, numbers, the constants "
            f"{', '.join(_CONSTANTS)}, and the functions {', '.join(sorted(_FUNCTIONS))}.",
        }
    },
    "required": ["expression"],
    "additionalProperties": False,
}
DESCRIPTION = (
    "Evaluate an arithmetic expression exactly (integers) or in floating point, e.g. '17 * 23' or 'sqrt(2) / 3'."
)

_BINARY: dict[type[ast.operator], Callable[[Any, Any], int | float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], int | float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def refuse(message: str) -> InvalidArguments:
    return InvalidArguments(f"{PARAM}: {message}", param=PARAM)


def _checked(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refuse(f"the result is not a number ({type(value).__name__})")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise refuse(f"an intermediate result exceeds {MAX_INT_BITS} bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise refuse("the result is not finite")
    return value


def _power(base: float, exponent: float) -> int | float:
    if abs(exponent) > MAX_EXPONENT:
        raise refuse(f"exponent {exponent} exceeds {MAX_EXPONENT}")
    # Bound the size before computing it: |base|**exponent has about bits(base) * exponent bits.
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and max(abs(base).bit_length() - 1, 0) * exponent > MAX_INT_BITS
    ):
        raise refuse(f"the power would exceed {MAX_INT_BITS} bits")
    return base**exponent


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return _checked(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        return _checked(_BINARY[type(node.op)](left, right))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _checked(_FUNCTIONS[node.func.id](*(_evaluate(arg) for arg in node.args)))
    raise refuse(
        f"{ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__!s} is not allowed: "
        "only numbers, arithmetic operators, parentheses and the listed functions and constants"
    )


def evaluate(expression: str) -> int | float:
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise refuse(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise refuse(f"not an arithmetic expression ({getattr(exc, 'msg', exc)})") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise refuse(f"more than {MAX_NODES} terms")
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise refuse("division by zero") from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise refuse(f"cannot be computed ({exc})") from None


async def calculate(arguments: dict[str, Any]) -> dict[str, int | float]:
    return {"value": evaluate(arguments["expression"])}

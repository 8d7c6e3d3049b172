"""A checked ``num_embeddings`` formula's value for known field values, so ``mmgen validate`` and
``mmgen new-modality`` refuse a formula that counts wrong for the spec's own test config
(``-5``, ``1e400``, a division by zero, ``2.5`` embeddings) instead of the run finding out.

The tree is interpreted node by node under Python's arithmetic, exactly as the generated
expression computes it, with every intermediate integer kept below ``MAX_BITS`` bits (a power is
refused before it is computed), so no formula and no field value can make this slow.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from mmgen.spec.formula import Formula, FormulaError, parse

MAX_BITS = 4096
# the largest count a sequence could hold: more is a formula that counts wrong
MAX_COUNT = 2**31 - 1

_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ceil": math.ceil,
    "floor": math.floor,
    "min": min,
    "max": max,
    "round": round,
    "int": int,
}


class Unknown(Exception):
    """The formula reads a value not given (``shape``, a field not set)."""


def value(
    formula: Formula | str,
    *,
    encoder: Mapping[str, Any],
    config: Mapping[str, Any],
    shape: tuple[int, ...] | None = None,
) -> int | float | None:
    """The formula's value, or None when it reads something not given here.

    Raises:
        FormulaError: the arithmetic fails (a division by zero, ``ceil`` of inf or nan,
            ``min`` of one number) or an
            intermediate value grows past ``MAX_BITS`` bits.
    """
    formula = parse(formula) if isinstance(formula, str) else formula
    scope = {"encoder": encoder, "config": config}
    try:
        return _value(formula.tree.body, scope, shape)
    except Unknown:
        return None
    except ZeroDivisionError:
        raise FormulaError("it divides by zero") from None
    except (OverflowError, ValueError, TypeError) as exc:
        raise FormulaError(f"its arithmetic fails: {exc}") from None


def count_problem(number: int | float) -> str | None:
    """Why ``number`` is no count of embeddings (the generated code's own test), or None."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return f"gives {number!r}, not a number"
    if math.isnan(number) or math.isinf(number):
        return f"gives {number}, not a finite number"
    if number < 1 or number % 1:
        return f"gives {number}, not a positive whole number"
    if number > MAX_COUNT:
        return f"gives {number}, more than {MAX_COUNT} embeddings"
    return None


def _value(node: ast.AST, scope: dict[str, Mapping[str, Any]], shape) -> Any:
    if isinstance(node, ast.Constant):
        return _bounded(node.value)
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left, scope, shape), _value(node.right, scope, shape)
        if isinstance(node.op, ast.Pow):
            return _bounded(_power(left, right))
        return _bounded(_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, scope, shape)
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        fields = scope.get(node.value.id, {})
        if node.attr not in fields:
            raise Unknown(node.attr)
        found = fields[node.attr]
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            raise Unknown(node.attr)  # not a number: the reference checks say so
        return _bounded(found)
    if isinstance(node, ast.Subscript):
        index = ast.literal_eval(node.slice)
        if shape is None or not -len(shape) <= index < len(shape):
            raise Unknown("shape")
        return shape[index]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
    ):
        args = [_value(arg, scope, shape) for arg in node.args]
        return _bounded(_FUNCTIONS[node.func.id](*args))
    raise Unknown(type(node).__name__)  # a name this evaluator does not know


def _power(base: Any, exponent: Any) -> Any:
    whole = isinstance(base, int) and isinstance(exponent, int)
    if whole and exponent > 0 and (abs(base).bit_length() - 1) * exponent > MAX_BITS:
        raise FormulaError(f"{base} ** {exponent} is too large")
    result = base**exponent
    if isinstance(result, complex):  # (-8) ** 0.5
        raise FormulaError(f"{base} ** {exponent} is not a real number")
    return result


def _bounded(number: Any) -> Any:
    if isinstance(number, int) and number.bit_length() > MAX_BITS:
        raise FormulaError(f"an intermediate value has more than {MAX_BITS} bits")
    return number

"""A tiny, safe arithmetic language for a spec's ``num_embeddings`` formula.

A spec is data, never code: a formula is parsed with :mod:`ast` and every node is checked
against a whitelist before anything else happens. mmgen never evaluates it: at generation time
:func:`to_python` writes the checked tree as one plain Python expression over the generated
processor's own values
(``math.ceil(self.encoder_config.max_source_positions / self.config.downsample_factor)``), so the
count is ordinary code that users can read, step through and edit. Every name in the language
means what it means in Python, so the count is the formula's value under Python arithmetic.

The language: integers and floats, ``+ - * / // % **``, unary minus, parentheses, the functions
``ceil floor min max round int``, and these names:

- ``shape``: the processed tensor's shape; only ``shape[i]`` with a literal integer ``i``;
- ``length``: the item's real length inside one encoder window, in the unit of the spec's
  ``length`` block (audio: samples at the processor's rate); only in specs with that block;
- ``encoder.<field>``: a field of the encoder's config (``encoder.image_size``);
- ``config.<field>``: a field of the generated modality config (``config.downsample_factor``);
- ``processor.<field>``: a field of the transformers processor (``processor.hop_length``).

The exponent of ``**`` is a number literal of at most 64 (``** 2``) or one ``encoder.<field>`` or
``config.<field>`` (``encoder.stride ** encoder.layers``): a power of the data (``2 ** shape[0]``)
or of a power (``2 ** 10 ** 10``) could take unbounded time and memory in the generated code,
where nothing checks it at run time.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Collection
from dataclasses import dataclass

# each function of the language and how to_python writes it (`import math` for ceil and floor)
FUNCTIONS = {
    "ceil": "math.ceil",
    "floor": "math.floor",
    "min": "min",
    "max": "max",
    "round": "round",
    "int": "int",
}
NAMESPACES = ("encoder", "config", "processor")
_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_MAX_LENGTH = 200
_MAX_POWER = 64  # keeps `2 ** 100000` from hanging the generated code
# the literal exponents of nested powers multiply (and products add them up): bounding that
# degree bounds the result's size, which `((9 ** 64) ** 64) ** 64` would not be per exponent
_MAX_DEGREE = 256


class FormulaError(ValueError):
    """The formula is not in the whitelisted language (the message says which part)."""


@dataclass(frozen=True)
class Formula:
    """A checked formula: its source and what it refers to."""

    source: str
    tree: ast.Expression
    encoder_fields: frozenset[str]
    config_fields: frozenset[str]
    processor_fields: frozenset[str]
    uses_shape: bool
    uses_length: bool
    functions: frozenset[str]


@functools.lru_cache(maxsize=256)
def parse(source: str) -> Formula:
    """Check ``source`` against the whitelist; raise FormulaError naming the first bad part."""
    if not isinstance(source, str) or not source.strip():
        raise FormulaError("a formula must be a non-empty string")
    if len(source) > _MAX_LENGTH:
        raise FormulaError(f"a formula is at most {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"not a valid expression: {exc.msg}") from None
    found: dict[str, set[str]] = {name: set() for name in (*NAMESPACES, "shape", "length", "call")}
    _check(tree.body, found)
    return Formula(
        source=source.strip(),
        tree=tree,
        encoder_fields=frozenset(found["encoder"]),
        config_fields=frozenset(found["config"]),
        processor_fields=frozenset(found["processor"]),
        uses_shape=bool(found["shape"]),
        uses_length=bool(found["length"]),
        functions=frozenset(found["call"]),
    )


def _check(node: ast.AST, found: dict[str, set[str]]) -> None:
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):
            raise FormulaError(f"only numbers are allowed as literals, not {node.value!r}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node.op, ast.Pow):
            _check_exponent(node.right)
            if _degree(node) > _MAX_DEGREE:
                raise FormulaError(
                    f"nested powers too large (their exponents multiply to more than {_MAX_DEGREE})"
                )
        _check(node.left, found)
        _check(node.right, found)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
        _check(node.operand, found)
    elif isinstance(node, ast.Attribute):
        if not (isinstance(node.value, ast.Name) and node.value.id in NAMESPACES):
            raise FormulaError(
                "attributes are allowed only as encoder.<field>, config.<field> or"
                " processor.<field>"
            )
        if node.attr.startswith("_"):
            raise FormulaError(f"private field {node.attr!r} is not allowed")
        found[node.value.id].add(node.attr)
    elif isinstance(node, ast.Subscript):
        index = node.slice
        if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
            index = index.operand
        if not (
            isinstance(node.value, ast.Name)
            and node.value.id == "shape"
            and isinstance(index, ast.Constant)
            and type(index.value) is int
        ):
            raise FormulaError("indexing is allowed only as shape[<integer>]")
        found["shape"].add("shape")
    elif isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise FormulaError(f"only the functions {', '.join(FUNCTIONS)} may be called")
        if node.keywords or not node.args:
            raise FormulaError(f"{node.func.id}() takes positional arguments only")
        found["call"].add(node.func.id)
        for arg in node.args:
            _check(arg, found)
    elif isinstance(node, ast.Name) and node.id == "length":
        found["length"].add("length")
    elif isinstance(node, ast.Name):
        raise FormulaError(
            f"unknown name {node.id!r}: use shape[i], length, encoder.<field>, config.<field>,"
            f" processor.<field> or one of {', '.join(FUNCTIONS)}()"
        )
    else:
        raise FormulaError(f"{type(node).__name__} is not allowed in a formula")


def _check_exponent(node: ast.AST) -> None:
    bare = node.operand if isinstance(node, ast.UnaryOp) else node
    if isinstance(bare, ast.Attribute):
        return  # a configured value (encoder.layers), trusted as the config itself is
    if not (isinstance(bare, ast.Constant) and type(bare.value) in (int, float)):
        raise FormulaError(
            "the exponent of ** must be a number or one encoder.<field>, config.<field> or"
            " processor.<field>"
        )
    if abs(bare.value) > _MAX_POWER:
        raise FormulaError(f"exponent {bare.value} is too large (at most {_MAX_POWER})")


def _degree(node: ast.AST) -> float:
    """How many times the formula's largest input is multiplied into the result, at most."""
    if isinstance(node, ast.BinOp):
        left, right = _degree(node.left), _degree(node.right)
        if isinstance(node.op, ast.Pow):
            bare = node.right.operand if isinstance(node.right, ast.UnaryOp) else node.right
            exponent = bare.value if isinstance(bare, ast.Constant) else 1  # a field: trusted
            return left * max(1, abs(exponent))
        return left + right if isinstance(node.op, ast.Mult) else max(left, right)
    if isinstance(node, ast.UnaryOp):
        return _degree(node.operand)
    if isinstance(node, ast.Call):
        return max(_degree(arg) for arg in node.args)
    return 1


def to_python(
    formula: Formula | str,
    *,
    shape: str = "shape",
    encoder: str = "encoder",
    config: str = "config",
    processor: str = "processor",
    length: str = "length",
    keyed: Collection[str] = (),
) -> str:
    """The checked formula as one Python expression with the same value.

    ``shape``, ``length``, ``encoder``, ``config`` and ``processor`` are the Python expressions
    the names stand for where the result is pasted (``value.shape``, ``self.encoder_config``); the
    namespaces named in ``keyed`` are mappings, read as ``options["field"]``. ``ceil`` and
    ``floor`` become ``math.ceil`` and ``math.floor``: the caller imports ``math``. Only the
    whitelisted tree is written, rebuilt node by node, and ``ast.unparse`` puts back exactly
    the parentheses the precedence needs.
    """
    formula = parse(formula) if isinstance(formula, str) else formula
    where = {"shape": shape, "length": length, "encoder": encoder, "config": config}
    where["processor"] = processor
    return ast.unparse(_to_ast(formula.tree.body, where, frozenset(keyed)))


def _expression(source: str) -> ast.expr:
    try:
        return ast.parse(source, mode="eval").body
    except SyntaxError:
        raise ValueError(f"{source!r} is not a Python expression") from None


def _to_ast(node: ast.AST, where: dict[str, str], keyed: frozenset[str]) -> ast.expr:
    if isinstance(node, ast.Constant):
        return ast.Constant(node.value)
    if isinstance(node, ast.BinOp):
        left, right = _to_ast(node.left, where, keyed), _to_ast(node.right, where, keyed)
        return ast.BinOp(left, node.op, right)
    if isinstance(node, ast.UnaryOp):
        return ast.UnaryOp(node.op, _to_ast(node.operand, where, keyed))
    if isinstance(node, ast.Attribute):
        scope = _expression(where[node.value.id])
        if node.value.id in keyed:
            return ast.Subscript(scope, ast.Constant(node.attr), ast.Load())
        return ast.Attribute(scope, node.attr, ast.Load())
    if isinstance(node, ast.Name):  # `length`, the only bare name parse lets through
        return _expression(where["length"])
    if isinstance(node, ast.Subscript):
        index = ast.Constant(ast.literal_eval(node.slice))
        return ast.Subscript(_expression(where["shape"]), index, ast.Load())
    if isinstance(node, ast.Call):
        function = _expression(FUNCTIONS[node.func.id])
        return ast.Call(function, [_to_ast(a, where, keyed) for a in node.args], [])
    raise FormulaError(f"{type(node).__name__} is not allowed in a formula")  # unreachable

"""The safe formula language: nothing outside the whitelist gets through, and the Python that
generated processors compute (``to_python``) gives the formula's value under Python arithmetic.
"""

import math
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmgen.spec.formula import FUNCTIONS, FormulaError, parse, to_python


@pytest.mark.parametrize(
    "source, expected",
    [
        ("(encoder.image_size // encoder.patch_size) ** 2", 576),
        ("(encoder.image_size // encoder.patch_size) ** 2 + 1", 577),
        ("ceil(shape[-1] / 160 / 2)", 10),
        ("shape[0] * shape[1]", 6000),
        ("max(1, min(shape[0], 4)) - -1", 3),
        ("ceil(encoder.max_source_positions / config.downsample_factor)", 750),
        ("floor(7 / 2) + round(2.6) + int(3.9) + 10 % 4", 11),
        ("-2 ** 2 + (-2) ** 2 + shape[0] ** -1 * 4", 2),
    ],
)
def test_known_formulas(source, expected):
    values = {
        "shape": (2, 3000),
        "encoder": {"image_size": 336, "patch_size": 14, "max_source_positions": 1500},
        "config": {"downsample_factor": 2},
    }
    assert reference(source, **values) == expected
    assert rendered(source, **values) == expected


@pytest.mark.parametrize(
    "attack",
    [
        "__import__('os').system('true')",
        "encoder.__class__",
        "encoder._private",
        "().__class__.__bases__[0]",
        "open('/etc/passwd')",
        "shape.__len__()",
        "lambda: 1",
        "[1, 2][0]",
        "'abc'",
        "shape[0:2]",
        "shape[config.x]",
        "x",
        "eval('1')",
        "ceil(x=1)",
        "1 if shape[0] else 2",
        "a := 1",
        "1; 2",
        "shape[0] << 2",
        "not 1",
        "True",
        "2 ** shape[0]",
        "2 ** -shape[0]",
        "2 ** (1 + 1)",
        "2 ** 65",
        "2 ** -65.0",
    ],
)
def test_everything_outside_the_whitelist_is_rejected(attack):
    with pytest.raises(FormulaError):
        parse(attack)


def test_exponents_and_length_are_bounded_when_parsed():
    with pytest.raises(FormulaError, match="too large"):
        parse("2 ** 100")
    with pytest.raises(FormulaError, match="must be a number or one"):
        parse("2 ** 10 ** 10")
    with pytest.raises(FormulaError, match="at most"):
        parse("1 + " * 100 + "1")
    assert parse("ceil(shape[-1] / encoder.stride ** encoder.layers)").encoder_fields == {
        "stride",
        "layers",
    }


def test_parse_reports_what_it_reads():
    formula = parse("ceil(shape[0] / config.k) * encoder.p")
    assert formula.uses_shape
    assert formula.config_fields == {"k"}
    assert formula.encoder_fields == {"p"}


def reference(source, *, shape=(), encoder=None, config=None):
    """The formula's meaning: Python arithmetic on its own source, with the language's names."""
    parse(source)  # only whitelisted formulas reach eval
    functions = {name: eval(spelling, {"math": math}) for name, spelling in FUNCTIONS.items()}
    scopes = {
        "shape": tuple(shape),
        "encoder": SimpleNamespace(**encoder) if isinstance(encoder, dict) else encoder,
        "config": SimpleNamespace(**config) if isinstance(config, dict) else config,
    }
    return eval(source, {"__builtins__": {}, **functions, **scopes})


def rendered(source, *, shape=(), encoder=None, config=None):
    """Evaluate ``to_python``'s expression the way a generated processor does: the tensor is
    ``value``, the configs are attributes of ``self``; an encoder given as a dict is read by key
    (a module encoder's ``config.encoder_options``), anything else by attribute.
    """
    keyed = ["encoder"] if isinstance(encoder, dict) else []
    code = to_python(
        source,
        shape="value.shape",
        encoder="self.config.encoder_options" if keyed else "self.encoder_config",
        config="self.config",
        keyed=keyed,
    )
    config = SimpleNamespace(**config) if isinstance(config, dict) else config
    if keyed:
        config = SimpleNamespace(**vars(config or SimpleNamespace()), encoder_options=encoder)
    elif isinstance(encoder, dict):
        encoder = SimpleNamespace(**encoder)
    scope = SimpleNamespace(encoder_config=encoder, config=config)
    value = SimpleNamespace(shape=tuple(shape))
    names = {"math": math, "min": min, "max": max, "round": round, "int": int}
    return eval(code, {"__builtins__": {}, **names, "self": scope, "value": value})


def test_to_python_writes_plain_code():
    assert (
        to_python(
            "ceil(encoder.max_source_positions / config.downsample_factor)",
            encoder="self.encoder_config",
            config="self.config",
        )
        == "math.ceil(self.encoder_config.max_source_positions / self.config.downsample_factor)"
    )
    assert (
        to_python(
            "shape[-1] // encoder.window // config.factor",
            shape="value.shape",
            encoder="self.config.encoder_options",
            keyed=["encoder"],
        )
        == "value.shape[-1] // self.config.encoder_options['window'] // config.factor"
    )
    assert to_python("(1 + 2) * -(3 - 4) ** 2") == "(1 + 2) * -(3 - 4) ** 2"


_FIELDS = ("a", "b")
_leaves = st.one_of(
    st.integers(0, 20).map(str),
    st.sampled_from(["0.5", "2.5", "160.0", "1e-3"]),
    st.sampled_from(["shape[0]", "shape[1]", "shape[-1]", "shape[-2]"]),
    st.sampled_from([f"{ns}.{f}" for ns in ("encoder", "config") for f in _FIELDS]),
)


def _combine(inner):
    return st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(inner, st.sampled_from(["0", "2", "-1", "0.5", "config.a", "-encoder.b"])).map(
            lambda t: f"({t[0]} ** {t[1]})"
        ),
        st.tuples(st.sampled_from(["-", "+"]), inner).map(lambda t: f"{t[0]}{t[1]}"),
        st.tuples(st.sampled_from(["ceil", "floor", "int", "round"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(inner, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
    )


_formulas = st.recursive(_leaves, _combine, max_leaves=8).filter(lambda s: len(s) <= 200)
_numbers = st.one_of(st.integers(0, 50), st.floats(0, 50, allow_nan=False).map(lambda x: x / 4))


def _outcome(function):
    try:
        value = function()
    except Exception as error:  # the same Python error (ZeroDivisionError, OverflowError, ...)
        return "error", type(error).__name__
    return ("nan", None) if isinstance(value, float) and math.isnan(value) else ("value", value)


@given(
    _formulas,
    st.tuples(st.integers(0, 50), st.integers(0, 50)),
    st.fixed_dictionaries({f: _numbers for f in _FIELDS}),
    st.fixed_dictionaries({f: _numbers for f in _FIELDS}),
    st.booleans(),
)
def test_rendered_python_computes_the_formula(source, shape, encoder, config, keyed):
    values = {"shape": shape, "encoder": encoder if keyed else SimpleNamespace(**encoder)}
    values["config"] = config
    expected = _outcome(lambda: reference(source, **values))
    assert _outcome(lambda: rendered(source, **values)) == expected, source


@given(st.integers(1, 10_000), st.integers(1, 64))
def test_ceil_division(n, k):
    count = rendered("ceil(shape[0] / config.k)", shape=(n,), config={"k": k})
    assert count == math.ceil(n / k) and isinstance(count, int)

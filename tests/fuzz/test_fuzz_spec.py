"""Fuzzed spec files through `mmgen validate` and `mmgen new-modality --out`: random YAML
structures, types, sizes, unicode, nesting and YAML features (anchors, tags, documents), and the
built-in specs with random values put anywhere in them.

Property: both commands agree — both refuse the spec with one `error: ...` line, exit 1 and
write nothing, or both accept it and the generated files are valid Python — and each example
ends in bounded time.
"""

from __future__ import annotations

import ast
import copy
import math

import yaml
from helpers.fuzzing import assert_clean_cli_failure, bounded, fuzz
from hypothesis import event, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.spec.catalog import builtin_specs

runner = CliRunner()
NAME = "fuzzmod"
BASES = {}
for _name, _path in builtin_specs().items():
    BASES[_name] = yaml.safe_load(_path.read_text())
    BASES[_name]["name"] = NAME

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["-5", "1e400", "0", "true", "(9**64)**64", "shape[0]", "encoder.x / 0"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# YAML that json-like dumps never make: tags, anchors, merges, documents, deep or huge parts
SNIPPETS = [
    "!!python/object/apply:os.system ['echo pwned']",
    "!!binary aGVsbG8=",
    "&a [1, 2]",
    "*a",
    "{<<: {x: 1}}",
    "? [1, 2]\n: x",
    "|\n  multi\n  line",
    "!!set {a, b}",
    "2001-12-14t21:59:43.10-05:00",
    "0x1F",
    "1_000",
    "1:20:30",
    ".nan",
    "-.inf",
    "~",
    "'\\x00'",
    '"\\ud800"',
    "[" * 200 + "]" * 200,
    "{a: " * 200 + "1" + "}" * 200,
    "9" * 5000,
    "x" * 70_000,
]


def paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))


@st.composite
def mutated(draw) -> str:
    """A built-in spec with one to three values replaced, removed or added anywhere."""
    spec = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(spec))))
        node = spec
        for part in path[:-1]:
            node = node[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            del node[path[-1]]
        elif action == "add" and isinstance(node.get(path[-1]), dict):
            node[path[-1]][draw(st.text(min_size=1, max_size=10))] = draw(values)
        else:
            node[path[-1]] = draw(values)
        if not isinstance(spec, dict) or not list(paths(spec)):
            break
    text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
    if draw(st.booleans()):  # a YAML feature somewhere a value stands
        lines = text.splitlines()
        at = draw(st.integers(0, len(lines) - 1))
        key = lines[at].split(":", 1)[0]
        if ":" in lines[at]:
            lines[at] = f"{key}: {draw(st.sampled_from(SNIPPETS))}"
        text = "\n".join(lines) + "\n"
    return text


random_text = (
    st.builds(lambda v: yaml.safe_dump(v, allow_unicode=True), values)
    | st.text(max_size=300)
    | st.binary(max_size=300).map(lambda b: b.decode("latin-1"))
    | st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=3).map(
        lambda parts: "\n".join(f"k{i}: {p}" for i, p in enumerate(parts))
    )
)


def run_both(tmp_path, text: str | bytes):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    out = tmp_path / "out"
    with bounded():
        checked = runner.invoke(app, ["validate", str(spec)])
        made = runner.invoke(app, ["new-modality", NAME, "--spec", str(spec), "--out", str(out)])
    return checked, made, out


def check(checked, made, out) -> None:
    if checked.exit_code != 0:
        assert (checked.exit_code == 1 and checked.exception is None) or isinstance(
            checked.exception, SystemExit
        ), (checked.output, checked.exception)
        lines = checked.output.strip().splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), checked.output
        assert all("Traceback" not in line for line in lines)
        assert_clean_cli_failure(made, [out])  # new-modality refuses what validate refuses
        event("refused")
        return
    event("accepted")
    assert ": valid spec for modality " in checked.output, checked.output
    assert made.exit_code == 0, f"validate accepted what new-modality refused: {made.output}"
    generated = list(out.rglob("*.py"))
    assert generated
    for path in generated:
        ast.parse(path.read_text())


@fuzz(40)
@given(mutated())
def test_mutated_builtin_specs(tmp_path_factory, text):
    check(*run_both(tmp_path_factory.mktemp("spec"), text))


@fuzz(25)
@given(random_text)
def test_random_yaml_and_text(tmp_path_factory, text):
    check(*run_both(tmp_path_factory.mktemp("spec"), text))


@fuzz(15)
@given(
    st.sampled_from(sorted(BASES)),
    st.sampled_from(["num_embeddings"]),
    st.one_of(
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(),
        st.booleans(),
        st.from_regex(r"\A[-+*/%() 0-9.e]{1,40}\Z"),
        st.sampled_from(["ceil(shape[0] / 0)", "2 ** encoder.x", "min(1)", "round(1e308 * 10)"]),
    ),
)
def test_counts(tmp_path_factory, base, key, count):
    spec = copy.deepcopy(BASES[base])
    spec[key] = count if not isinstance(count, float) or math.isfinite(count) else str(count)
    text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
    check(*run_both(tmp_path_factory.mktemp("spec"), text))

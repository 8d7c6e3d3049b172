"""Fuzzed specs: malformed ones give one clean error line, a non-zero exit and write nothing;
any text a spec may hold lands in generated code as data, never as code.
"""

import ast
import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.spec.catalog import builtin_specs

runner = CliRunner()
BASES = {name: yaml.safe_load(path.read_text()) for name, path in builtin_specs().items()}
REQUIRED = ["name", "description", "processor", "encoder", "num_embeddings", "test"]
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def paths(node, prefix=()):
    """Every key path of a nested spec dict, mapping paths included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key), value
            yield from paths(value, (*prefix, key))


def generate(tmp_path, data, name="fuzzed"):
    spec = tmp_path / "spec.yaml"
    spec.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True))
    out = tmp_path / "out"
    result = runner.invoke(app, ["new-modality", name, "--spec", str(spec), "--out", str(out)])
    return result, out


def assert_clean_failure(result, out):
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not out.exists()


def set_path(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def free_form(path):
    """Mappings whose keys are the user's (keyword options, tiny test configs)."""
    return "options" in path or path[:2] in (("test", "encoder"), ("test", "processor"))


def typed_key(path, value):
    """Keys whose value has a type the schema checks (numbers, blocks, names, kinds)."""
    if free_form(path):
        return False
    number = isinstance(value, int) and not isinstance(value, bool)
    return number or isinstance(value, dict) or path[-1] in ("name", "kind", "class")


@st.composite
def broken_specs(draw):
    """A built-in spec with one mutation; returns (mutation, spec)."""
    base = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    mutation = draw(st.sampled_from(["unknown key", "missing", "wrong type"]))
    if mutation == "missing":
        del base[draw(st.sampled_from(REQUIRED))]
    elif mutation == "unknown key":
        mappings = [p for p, v in paths(base) if isinstance(v, dict) and not free_form(p)]
        path = draw(st.sampled_from([(), *mappings]))
        node = base
        for part in path:
            node = node[part]
        node["zz_" + draw(st.text("abcdefgh_", min_size=1, max_size=8))] = 1
    else:
        typed = [path for path, value in paths(base) if typed_key(path, value)]
        path = draw(st.sampled_from(typed))
        set_path(base, path, draw(st.sampled_from([[1, 2], {"x": None}, "not a number!", -7])))
    return mutation, base


@FUZZ
@given(broken_specs())
def test_malformed_specs_fail_cleanly(tmp_path_factory, case):
    mutation, data = case
    tmp_path = tmp_path_factory.mktemp("fuzz")
    result, out = generate(tmp_path, data)
    if result.exit_code == 0 and mutation == "wrong type":
        # a replacement that is still valid (e.g. -7 where any int goes) must give real code
        for path in out.rglob("*.py"):
            ast.parse(path.read_text())
        return
    assert_clean_failure(result, out)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_is_never_a_spec(tmp_path_factory, text):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    result, out = generate(tmp_path, text)
    assert_clean_failure(result, out)


one_line = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60).filter(
    lambda t: "\n" not in t and "\r" not in t
)


@FUZZ
@given(pretrained=one_line, placeholder=one_line, description=one_line, option=st.text())
def test_spec_strings_land_as_data(tmp_path_factory, pretrained, placeholder, description, option):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    data = copy.deepcopy(BASES["audio"])
    data["encoder"]["pretrained"] = pretrained
    data["placeholder"] = placeholder
    data["description"] = description
    data["processor"]["options"]["language"] = option
    result, out = generate(tmp_path, data, name="audio_x")
    held = yaml.safe_load((tmp_path / "spec.yaml").read_text())  # what the spec file holds
    if result.exit_code != 0:  # only schema limits may refuse (e.g. a blank description)
        assert_clean_failure(result, out)
        assert "description" in result.output or "placeholder" in result.output
        return
    for path in out.rglob("*.py"):
        ast.parse(path.read_text())  # nothing a spec holds can break or inject syntax
    config = ast.parse((out / "audio_x" / "config.py").read_text())
    init = next(n for n in ast.walk(config) if isinstance(n, ast.FunctionDef))
    args = init.args.args[1:]
    defaults = dict(zip([a.arg for a in args], init.args.defaults, strict=True))
    assert ast.literal_eval(defaults["encoder_name_or_path"]) == held["encoder"]["pretrained"]
    assert ast.literal_eval(defaults["placeholder"]) == held["placeholder"]
    processor = ast.parse((out / "audio_x" / "processor.py").read_text())
    options = next(
        n.value
        for n in ast.walk(processor)
        if isinstance(n, ast.AnnAssign) and n.target.id == "CALL_OPTIONS"
    )
    assert ast.literal_eval(options)["language"] == held["processor"]["options"]["language"]

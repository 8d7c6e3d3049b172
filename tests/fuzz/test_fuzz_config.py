"""Fuzzed training configs and ``--set`` overrides: a valid config with random values put
anywhere (types, sizes, unicode, nesting), random override strings, and random text.

Property: ``load_config`` gives a config or raises a one-line ``ConfigError`` that names the
file (``train.yaml:LINE: key``) or the override (``--set ...``); where it raises, ``mmgen train``
prints that one line, exits 1 and writes nothing (no run folder). Each example ends in bounded
time.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from helpers.fuzzing import assert_clean_cli_failure, bounded, fuzz, one_line
from hypothesis import event, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.errors import ConfigError
from mmgen.train.config import TrainConfig, load_config
from tests.train.helpers import make_config

runner = CliRunner()
BASE = make_config(Path("/nonexistent/data"), Path("/nonexistent/run"))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def key_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from key_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from key_paths(value, (*prefix, i))


PATHS = [".".join(map(str, path)) for path in key_paths(BASE)]
yaml_values = st.one_of(
    values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
    st.text(max_size=30),
    st.sampled_from(["[" * 100 + "]" * 100, "9" * 5000, "{a: *b}", "!!python/name:os.system", ""]),
)
overrides = st.builds(
    lambda key, sep, value: f"{key}{sep}{value}",
    st.sampled_from(PATHS) | st.text(max_size=20) | st.sampled_from(["a..b", ".", "stages.9.x"]),
    st.sampled_from(["=", "=", ""]),
    yaml_values,
)


@st.composite
def configs(draw) -> str:
    config = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(key_paths(config)) or [("seed",)]))
        node = config
        for part in path[:-1]:
            node = node[part]
        if draw(st.booleans()):
            node[path[-1]] = draw(values)
        elif isinstance(node, dict):
            del node[path[-1]]
    return yaml.safe_dump(config, allow_unicode=True, sort_keys=False)


def check(tmp_path: Path, text: str | bytes, sets: list[str]) -> None:
    path = tmp_path / "train.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    with bounded():
        try:
            config = load_config(path, sets)
        except ConfigError as exc:
            message = one_line(str(exc))
            assert message.startswith((str(path), "--set ")), message
            event("refused")
        else:
            assert isinstance(config, TrainConfig)
            event("accepted")
            return
        run = Path(yaml.safe_load(BASE_TEXT)["output_dir"])
        args = ["train", str(path)] + [f"--set={s}" for s in sets]
        assert_clean_cli_failure(runner.invoke(app, args), [run])


BASE_TEXT = yaml.safe_dump(BASE)


@fuzz(30)
@given(configs(), st.lists(overrides, max_size=3))
def test_configs_and_overrides(tmp_path_factory, text, sets):
    check(tmp_path_factory.mktemp("config"), text, sets)


@fuzz(15)
@given(
    st.text(max_size=200)
    | st.binary(max_size=200)
    | values.map(lambda v: yaml.safe_dump(v, allow_unicode=True))
)
def test_random_files(tmp_path_factory, text):
    check(tmp_path_factory.mktemp("config"), text, [])

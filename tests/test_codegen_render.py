"""Names, rendering filters, the sandbox, formatting with ruff and the anchor edit."""

import ast
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from mmgen.codegen import formatting
from mmgen.codegen.context import config_fields, num_embeddings_code
from mmgen.codegen.formatting import format_python
from mmgen.codegen.render import (
    docline,
    environment,
    insert_at_anchor,
    py_literal,
    py_string,
)
from mmgen.errors import DataError, MmgenError
from mmgen.spec.catalog import builtin_specs
from mmgen.spec.loading import load_spec
from mmgen.spec.names import Names


@pytest.mark.parametrize(
    "name, snake, camel, upper, kebab",
    [
        ("audio", "audio", "Audio", "AUDIO", "audio"),
        ("depth_map", "depth_map", "DepthMap", "DEPTH_MAP", "depth-map"),
        ("depth-map", "depth_map", "DepthMap", "DEPTH_MAP", "depth-map"),
        ("DepthMap", "depth_map", "DepthMap", "DEPTH_MAP", "depth-map"),
        ("eeg64", "eeg64", "Eeg64", "EEG64", "eeg64"),
        ("eeg-64", "eeg_64", "Eeg64", "EEG_64", "eeg-64"),
    ],
)
def test_every_spelling_from_one_name(name, snake, camel, upper, kebab):
    names = Names.of(name)
    assert (names.snake, names.camel, names.upper, names.kebab) == (snake, camel, upper, kebab)
    assert names.modality_class == f"{camel}Modality"
    assert names.config_class == f"{camel}Config"


@given(st.text(max_size=40))
def test_py_string_round_trips_any_text(text):
    literal = py_string(text)
    assert literal.startswith('"') and "\n" not in literal
    assert ast.literal_eval(literal) == text


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    ),
)
def test_py_literal_round_trips_json_values(value):
    assert ast.literal_eval(py_literal(value)) == value


def test_py_literal_refuses_what_it_cannot_write():
    for bad in (float("nan"), float("inf"), object(), {1, 2}):
        with pytest.raises(MmgenError):
            py_literal(bad)


def test_docline_is_one_safe_line():
    text = 'evil """\n import os \\ end"'
    line = docline(text)
    assert "\n" not in line and '"""' not in line and "\\" not in line
    ast.parse(f'"""{line}."""')


def test_template_values_cannot_inject_code():
    env = environment()
    template = env.from_string("x = {{ value|py }}\n# {{ value|docline }}\n")
    for value in ['"; import os; "', "{{ 7*7 }}", "a\nimport os", "\\", "'''"]:
        source = template.render(value=value)
        tree = ast.parse(source)
        assert len(tree.body) == 1  # one assignment, nothing else
        assert ast.literal_eval(tree.body[0].value) == value


def test_environment_is_sandboxed_and_strict():
    env = environment()
    with pytest.raises(SecurityError):
        env.from_string("{{ ''.__class__.__mro__ }}").render()
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing }}").render()


UNSORTED = """\
from .config import AudioConfig
import torch
from mmgen import BaseModality
from typing import Any
from demo.modalities.audio import AudioModality
from mmgen import MODALITY_VALUE_KEY, AutoModality
from __future__ import annotations
import math

VALUES = {"a": 1, "b": [1, 2, 3], "c": "a string to make this line wrap", "d": 4}
print(Any, torch, math, BaseModality, MODALITY_VALUE_KEY, AutoModality, AudioModality, AudioConfig)
"""


def test_ruff_sorts_imports_and_formats_with_the_targets_settings(tmp_path):
    project = tmp_path / "demo"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.ruff]\nline-length = 70\n")
    path = project / "demo" / "modalities" / "audio" / "x.py"  # not on disk yet
    text = format_python(path, UNSORTED, first_party=("demo",))
    assert text.startswith(
        "from __future__ import annotations\n\n"
        "import math\n"
        "from typing import Any\n\n"
        "import torch\n"
        "from mmgen import MODALITY_VALUE_KEY, AutoModality, BaseModality\n\n"
        "from demo.modalities.audio import AudioModality\n\n"
        "from .config import AudioConfig\n"
    )
    assert max(len(line) for line in text.splitlines()) <= 70  # the project's line length
    assert format_python(path, text, first_party=("demo",)) == text  # stable, deterministic
    assert not list(tmp_path.rglob("*.py")) and not list(tmp_path.rglob(".ruff_cache"))
    wide = format_python(tmp_path / "elsewhere" / "x.py", UNSORTED)
    assert 'VALUES = {"a": 1, "b": [1, 2, 3],' in wide  # ruff's default line length there


def test_missing_ruff_is_a_one_line_error(monkeypatch):
    formatting.ruff_binary.cache_clear()
    monkeypatch.setitem(sys.modules, "ruff", None)  # `import ruff` fails as if not installed
    try:
        with pytest.raises(MmgenError, match=r"^ruff is not installed .*: pip install ruff$"):
            format_python(Path("x.py"), "x = 1\n")
    finally:
        formatting.ruff_binary.cache_clear()


def test_text_ruff_cannot_parse_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(MmgenError, match=r"x\.py: ruff .* failed on the generated file: "):
        format_python(tmp_path / "x.py", "def broken(:\n")


def generated_counter(formula):
    """The ecg spec with ``formula``: its generated ``num_embeddings`` on a bare class, with
    the ecg config's values (4 conv layers of stride 2, pairs averaged).
    """
    path = builtin_specs()["ecg"]
    text = re.sub(
        r"num_embeddings: >-\n  [^\n]*\n", f'num_embeddings: "{formula}"\n', path.read_text()
    )
    spec = load_spec(path, text)
    count = num_embeddings_code(spec, config_fields(spec))
    method = environment().get_template("modality/_num_embeddings.jinja").render(count=count)
    assert count["expression"] in method and "formula import" not in method
    namespace = {"math": math, "torch": SimpleNamespace(Tensor=object), "DataError": DataError,
                 "Any": Any, "Callable": Callable}  # fmt: skip
    exec("class Counter:\n" + method, namespace)  # the method exactly as generated
    counter = namespace["Counter"]()
    counter.config = SimpleNamespace(downsample_factor=2, encoder_options=spec.encoder.options)
    return counter


def test_generated_count_is_plain_python_checked_for_positive_whole_numbers():
    def count(counter, length):
        return counter.num_embeddings(SimpleNamespace(shape=(1, length)))

    ecg = generated_counter(
        "ceil(shape[-1] / encoder.stride ** encoder.layers / config.downsample_factor)"
    )
    assert count(ecg, 2500) == 79 and isinstance(count(ecg, 2500), int)
    with pytest.raises(DataError, match="num_embeddings gave 0: not a positive number"):
        count(ecg, 0)
    exact = generated_counter("shape[-1] / 7")
    assert count(exact, 14) == 2 and isinstance(count(exact, 14), int)
    for length in (10, 0):
        with pytest.raises(DataError, match="not a positive whole number"):
            count(exact, length)


ANCHOR = "# anchor"


def test_anchor_edit_sorted_and_idempotent():
    text = '"""doc"""\n\n# anchor\n'
    once = insert_at_anchor(text, ANCHOR, "import p.zeta", where="f")
    twice = insert_at_anchor(once, ANCHOR, "import p.alpha", where="f")
    assert twice == '"""doc"""\n\nimport p.alpha\nimport p.zeta\n# anchor\n'
    assert insert_at_anchor(twice, ANCHOR, "import p.zeta", where="f") == twice


def test_missing_anchor_is_a_loud_error():
    with pytest.raises(MmgenError, match=r"f\.py: anchor comment '# anchor' not found"):
        insert_at_anchor("import x\n", ANCHOR, "import y", where="f.py")

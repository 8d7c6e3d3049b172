"""Names, rendering filters, the sandbox, import blocks and the anchor edit."""

import ast
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from mmgen.codegen.imports import import_block
from mmgen.codegen.render import (
    docline,
    environment,
    insert_at_anchor,
    py_literal,
    py_long_string,
    py_string,
)
from mmgen.errors import MmgenError
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


@given(st.text(max_size=300))
def test_long_strings_round_trip(text):
    literal = py_long_string(text, prefix=17)
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
    st.sampled_from([None, 0, 4, 8]),
)
def test_py_literal_round_trips_json_values(value, indent):
    source = py_literal(value, indent)
    assert ast.literal_eval(source) == value


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


def test_import_block_sorts_like_ruff(tmp_path):
    block = import_block(
        "from __future__ import annotations",
        "from typing import Any",
        "import torch",
        "",
        "from transformers import WhisperModel",
        "from mmgen import MODALITY_VALUE_KEY, AutoModality",
        "from mmgen import BaseModality",
        "import math",
        "from .config import AudioConfig",
        "from demo.modalities.audio import AudioConfig, AudioModality, AudioProcessor",
        first_party=("demo",),
    )
    source = tmp_path / "x.py"
    source.write_text(block + "\n\nprint(Any, torch, WhisperModel, AutoModality, math)\n")
    ruff = [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "I"]
    first_party = ["--config", 'lint.isort.known-first-party = ["demo"]']
    checked = subprocess.run(
        [*ruff, *first_party, str(source)], capture_output=True, text=True, cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stdout
    assert "from mmgen import MODALITY_VALUE_KEY, AutoModality, BaseModality" in block
    with pytest.raises(ValueError):
        import_block("print('hi')")


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

"""Spec schema and loading: every problem is one `file:line: field: message`."""

import textwrap

import pytest

from mmgen.errors import MmgenError, SpecError
from mmgen.spec.catalog import builtin_specs, resolve
from mmgen.spec.loading import load_spec

GOOD = textwrap.dedent(
    """\
    name: eeg
    description: Four-channel EEG through a small MLP
    processor:
      kind: numeric
      sampling_rate: 128
      length: 512
      channels: 4
    encoder:
      kind: mlp
      options: {in_channels: 4, hidden_size: 32, patch: 16}
    num_embeddings: ceil(shape[-1] / encoder.patch)
    test:
      encoder: {in_channels: 4, hidden_size: 8, patch: 16}
      sample: {kind: signal, options: {channels: 4}}
    """
)


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec("eeg.yaml", text)
    return info.value


def test_good_spec_and_defaults():
    spec = load_spec("eeg.yaml", GOOD)
    assert spec.names.camel == "Eeg"
    assert spec.loader_name == "raw-eeg"
    assert spec.placeholder_token == "<eeg>"
    assert spec.projector.kind == "mlp" and spec.config.hidden_size == 4096
    assert spec.source == "eeg.yaml"


@pytest.mark.parametrize("name", sorted(builtin_specs()))
def test_builtin_specs_are_valid(name):
    spec = load_spec(builtin_specs()[name])
    assert spec.name == name
    assert spec.description and "\n" not in spec.description


def test_unknown_key_gets_line_and_suggestion():
    error = error_of(GOOD.replace("  length: 512", "  lenght: 512"))
    assert str(error) == "eeg.yaml:6: processor.lenght: unknown key; did you mean 'length'?"


def test_unknown_top_level_key_lists_choices_when_nothing_is_close():
    error = error_of(GOOD + "zzz: 1\n")
    assert str(error).startswith("eeg.yaml:15: zzz: unknown key; expected one of name,")


def test_wrong_type_points_at_the_value_line():
    error = error_of(GOOD.replace("length: 512", "length: long"))
    assert str(error).startswith("eeg.yaml:6: processor.length: ")
    assert "integer" in str(error)


def test_missing_required_block():
    error = error_of(GOOD.replace("num_embeddings: ceil(shape[-1] / encoder.patch)\n", ""))
    assert str(error) == "eeg.yaml:1: num_embeddings: required key is missing"


def test_kind_rules_point_at_the_offending_key():
    text = GOOD.replace("  kind: mlp\n", "  kind: mlp\n  pretrained: x\n")
    assert str(error_of(text)) == "eeg.yaml:10: encoder.pretrained: not used with kind 'mlp'"
    text = GOOD.replace("  kind: mlp\n", "  kind: transformers\n  class: transformers.BertModel\n")
    assert "encoder.pretrained: required for kind 'transformers'" in str(error_of(text))


def test_several_errors_are_all_kept_sorted_by_line():
    text = GOOD.replace("length: 512", "length: -3").replace("hidden_size: 32", "hidden_size: x")
    text = text.replace("description:", "descripton:")
    error = error_of(text)
    lines = [int(m.split(":")[1]) for m in error.messages]
    assert lines == sorted(lines) and len(lines) >= 3
    assert "(and " in str(error) and "mmgen validate" in str(error)


@pytest.mark.parametrize(
    "name, message",
    [
        ("class", "Python keyword"),
        ("../evil", "path separators"),
        ("a/b", "path separators"),
        ("os", "shadow the module"),
        ("signal", "shadow the module"),
        ("torch", "shadow the module"),
        ("9lives", "start with a letter"),
        ("a__b", "single '_'"),
    ],
)
def test_bad_names(name, message):
    error = error_of(GOOD.replace("name: eeg", f"name: {name!r}"))
    assert str(error).startswith("eeg.yaml:1: name: ") and message in str(error)


def test_formula_errors_point_at_num_embeddings():
    error = error_of(GOOD.replace("ceil(shape[-1] / encoder.patch)", "__import__('os')"))
    assert str(error).startswith("eeg.yaml:11: num_embeddings: only the functions")


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: [1, 2", "yaml:"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("name: x\nname: y\n", "name: duplicate key"),
        ("a: &x {b: 1}\nc: *x\n", "anchors/aliases"),
        ("a: !!python/object:os.system {}\n", "yaml:"),
    ],
)
def test_yaml_problems(text, message):
    assert message in str(error_of(text))


def test_unreadable_and_huge_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 300_000)
    with pytest.raises(SpecError, match="larger than"):
        load_spec(huge)


def test_resolve_builtin_and_renamed_file(tmp_path):
    spec, builtin = resolve("audio", None)
    assert builtin and spec.name == "audio"
    with pytest.raises(MmgenError, match="no built-in spec named 'eeg'; built-ins: audio"):
        resolve("eeg", None)
    path = tmp_path / "eeg.yaml"
    path.write_text(GOOD)
    spec, builtin = resolve("scalp-eeg", path)
    assert not builtin and spec.names.snake == "scalp_eeg"
    assert str(spec.error(("num_embeddings",), "x")) == f"{path}:11: num_embeddings: x"


@pytest.mark.parametrize(
    "loader, message",
    [
        ("{name: raw-audio, options: {sampling_rate: 8000}}", "loader.options: not used without"),
        ("{decode: video, options: {num_frame: 4}}", "did you mean 'num_frames'?"),
        ("{decode: video, options: {num_frames: many}}", "num_frames must be an integer"),
        ("{decode: text, options: {encoding: 8}}", "encoding must be a string"),
        ("{decode: smell}", "loader.decode: Input should be"),
        ("{name: Raw Audio}", "loader.name: String should match pattern"),
    ],
)
def test_loader_block(loader, message):
    error = error_of(GOOD + f"loader: {loader}\n")
    assert str(error).startswith("eeg.yaml:15: loader") and message in str(error)

"""Specs that once crashed, hung or passed `mmgen validate` and failed later (issue 16): each is
now one `file:line` error from `mmgen validate` and `mmgen new-modality` alike, which agree."""

import os
import threading

import pytest
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.spec.formula import FormulaError, parse
from mmgen.spec.formula_value import value

runner = CliRunner()
# the built-in audio spec as it was when these tests were written (line numbers below)
AUDIO = """\
# Audio: speech and sounds through OpenAI's Whisper encoder.
# Whisper sees 30 s of log-mel features (3000 frames) as 1500 positions; strided concatenation
# of 2 neighbours halves that to 750 embeddings of width 2*d_model per clip.
name: audio
description: Speech and sound through a Whisper encoder, 2x strided-concat downsampling
placeholder: "<audio>"

loader:
  name: raw-audio          # mmgen's loader: bytes, paths or arrays, resampled

processor:
  class: transformers.WhisperFeatureExtractor
  pretrained: openai/whisper-base
  output: input_features
  options:
    sampling_rate: 16000

encoder:
  class: transformers.WhisperModel
  pretrained: openai/whisper-base
  submodule: encoder        # the speech encoder of the encoder-decoder model
  input: input_features
  downsample: {mode: concat, factor: 2}

# every clip is padded to Whisper's window: the count comes from the encoder's config
num_embeddings: ceil(encoder.max_source_positions / config.downsample_factor)

projector: {kind: mlp, layers: 2, activation: gelu}
config: {hidden_size: 4096, max_batch_size: 16}
trainable: {encoder: false, projector: true}

test:
  encoder:                 # a tiny Whisper: 1-second window (100 mel frames -> 50 positions)
    d_model: 16
    encoder_layers: 1
    decoder_layers: 1
    encoder_attention_heads: 2
    decoder_attention_heads: 2
    encoder_ffn_dim: 32
    decoder_ffn_dim: 32
    num_mel_bins: 8
    max_source_positions: 50
    max_target_positions: 16
    vocab_size: 64
    pad_token_id: 0
    bos_token_id: 1
    eos_token_id: 2
    decoder_start_token_id: 1
  processor:               # the matching feature extractor: 8 mel bins, 1-second chunks
    feature_size: 8
    sampling_rate: 16000
    hop_length: 160
    chunk_length: 1
    n_fft: 400
  sample:
    kind: tone
    options: {seconds: 0.8, sampling_rate: 16000}
  hidden_size: 32
"""
FORMULA = "num_embeddings: ceil(encoder.max_source_positions / config.downsample_factor)"


def both(tmp_path, text: str) -> tuple[str, str]:
    """The output of `mmgen validate` and of `mmgen new-modality` on the spec ``text``; both
    must fail with error lines only and write nothing."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    checked = runner.invoke(app, ["validate", str(spec)])
    out = tmp_path / "out"
    made = runner.invoke(app, ["new-modality", "audio_x", "--spec", str(spec), "--out", str(out)])
    for result in (checked, made):
        assert result.exit_code == 1, result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), result.exception
        assert all(line.startswith("error: ") for line in result.output.strip().splitlines())
    assert not out.exists()
    return checked.output, made.output


def with_count(count: str) -> str:
    assert FORMULA in AUDIO
    return AUDIO.replace(FORMULA, f"num_embeddings: {count}")


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path, opening):
    closing = "]" if opening == "[" else "}"
    checked, made = both(tmp_path, "name: " + opening * 50_000 + closing * 50_000 + "\n")
    assert "spec.yaml:1: yaml: nested more than 64 levels deep" in checked
    assert "nested more than 64 levels deep" in made


def test_deep_block_mappings_too(tmp_path):
    text = "".join("  " * depth + f"k{depth}:\n" for depth in range(200))
    checked, _ = both(tmp_path, text)
    assert "yaml: nested more than 64 levels deep" in checked


def test_a_5000_digit_integer_is_an_error(tmp_path):
    checked, made = both(tmp_path, with_count("9" * 5000))
    assert "spec.yaml:26: yaml: an integer of 5000 digits (at most 32)" in checked
    assert "an integer of 5000 digits" in made


def test_a_huge_value_is_an_error(tmp_path):
    checked, _ = both(tmp_path, AUDIO.replace("description: ", "description: " + "x" * 70_000))
    assert "yaml: a value of 70" in checked


@pytest.mark.parametrize(
    ("count", "message"),
    [
        ('"-5"', "for the test config it gives -5, not a positive whole number"),
        ('"0"', "gives 0, not a positive whole number"),
        ('"1e400"', "gives inf, not a finite number"),
        ('"1e400 - 1e400"', "gives nan, not a finite number"),
        ('"2.5"', "gives 2.5, not a positive whole number"),
        ('"1 / 0"', "for the test config it divides by zero"),
        ('"2 ** 40"', "more than 2147483647 embeddings"),
        ('"encoder.max_source_positions - 50"', "gives 0, not a positive whole number"),
        ('"min(3)"', "its arithmetic fails"),
    ],
)
def test_formulas_that_count_wrong_for_the_test_config(tmp_path, count, message):
    checked, made = both(tmp_path, with_count(count))
    assert "spec.yaml:26: num_embeddings: " in checked and message in checked
    assert message in made


@pytest.mark.parametrize("count", ["true", "false", "2147483648", "0", "-3"])
def test_fixed_counts_are_positive_whole_numbers_not_booleans(tmp_path, count):
    checked, _ = both(tmp_path, with_count(count))
    assert "spec.yaml:26: num_embeddings: " in checked


def test_nested_powers_are_refused_by_their_size():
    for source in ("(((9**64)**64)**64)**64", "(9 ** 64) ** 64", "(shape[0] ** 16) ** 17"):
        with pytest.raises(FormulaError, match="nested powers too large"):
            parse(source)
    parse("(shape[0] ** 16) ** 16")  # degree 256: still a quick number
    # a configured exponent is trusted by the language, but not computed past the bound
    with pytest.raises(FormulaError, match="too large"):
        value("2 ** encoder.layers", encoder={"layers": 10**9}, config={})
    assert value("2 ** encoder.layers", encoder={"layers": 10}, config={}) == 1024
    assert value("ceil(shape[0] / 2)", encoder={}, config={}) is None  # per item: unknown
    assert value("ceil(shape[0] / 2)", encoder={}, config={}, shape=(5,)) == 3


def test_non_finite_test_values_fail_validate_as_they_fail_new_modality(tmp_path):
    checked, made = both(tmp_path, AUDIO.replace("    d_model: 16", "    d_model: .inf"))
    assert "spec.yaml:34: test.encoder.d_model: inf is not a finite number" in checked
    assert "inf is not a finite number" in made


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("os.system", "os.system is in Python's standard library"),
        ("subprocess.Popen", "subprocess.Popen is in Python's standard library"),
        ("mypkg.models.build_encoder", "'build_encoder' is not a class name"),
        ("transformers.WhisperConfig", "transformers.WhisperConfig is not a model class"),
        ("transformers.pipeline", "transformers.pipeline is not a model class"),
    ],
)
def test_the_encoder_class_must_be_a_model_class(tmp_path, cls, message):
    text = AUDIO.replace("  class: transformers.WhisperModel", f"  class: {cls}")
    checked, made = both(tmp_path, text)
    assert "spec.yaml:19: encoder.class: " in checked and message in checked
    assert message in made


def test_a_non_string_key_is_reported_at_its_own_line(tmp_path):
    checked, _ = both(tmp_path, AUDIO + "\n\n1: x\n")
    line = (AUDIO + "\n\n1: x\n").splitlines().index("1: x") + 1
    assert f"spec.yaml:{line}: " in checked


def test_devices_and_fifos_are_refused_without_reading(tmp_path):
    for target in ("/dev/zero", "/dev/urandom"):
        result = runner.invoke(app, ["validate", target])
        assert result.exit_code == 1
        assert "not a regular file" in result.output
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    done: list = []
    thread = threading.Thread(
        target=lambda: done.append(runner.invoke(app, ["validate", str(fifo)]))
    )
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():  # unblock the reader so the test run can end, then fail
        with open(fifo, "w"):
            pass
        thread.join()
        pytest.fail("mmgen validate blocked on a FIFO")
    assert done[0].exit_code == 1 and "not a regular file" in done[0].output
    folder = runner.invoke(app, ["validate", str(tmp_path)])
    assert folder.exit_code == 1 and "is a folder, not a file" in folder.output


def test_a_key_with_a_control_character_stays_on_one_line(tmp_path):
    # found by the fuzz suite: "\x1e" in a key split the error into two lines
    text = AUDIO.replace("test:\n", 'test:\n  "a\\x1eb": 1\n  "c\\u2028d": 2\n', 1)
    checked, made = both(tmp_path, text)
    assert "test.'a\\x1eb': unknown key" in checked
    assert len(made.strip().splitlines()) == 1


def test_an_override_with_a_line_break_stays_on_one_line(tmp_path):
    from mmgen.errors import ConfigError
    from mmgen.train.config import load_config

    config = tmp_path / "train.yaml"
    config.write_text("seed: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(config, ["output_dir=null\n..."])
    messages = info.value.messages
    assert any(m.startswith("--set output_dir=null\\n...: output_dir: ") for m in messages)
    assert not any("\n" in m for m in messages)


@pytest.mark.parametrize("key", ["a[", "int", "list[str]", "function-x"])
def test_keys_that_look_like_pydantic_tags_are_keys(tmp_path, key):
    # found by the long fuzz run: a top-level key `a[` was taken for a pydantic tag and the
    # error handler failed with an IndexError
    from mmgen.errors import ConfigError
    from mmgen.train.config import load_config

    config = tmp_path / "train.yaml"
    config.write_text(f"seed: 0\n{key!r}: 1\n".replace("'", '"'))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert any(f":2: {key}: unknown key" in m for m in info.value.messages), info.value.messages

"""A spec's ``length`` block (embeddings that follow the input's length, in windows) and its
``boundary`` tokens: their rules point at the line at fault, and a spec using both generates a
package whose own test passes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.errors import SpecError
from mmgen.spec.catalog import builtin_specs
from mmgen.spec.formula import parse, to_python
from mmgen.spec.loading import load_spec

AUDIO = builtin_specs()["audio"].read_text(encoding="utf-8")
COUNT = AUDIO[AUDIO.index("num_embeddings: >-") : AUDIO.index("projector:")].rstrip() + "\n"


def with_lines(old: str, new: str) -> str:
    assert old in AUDIO
    return AUDIO.replace(old, new)


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec("speech.yaml", text)
    return str(info.value)


def test_the_builtin_audio_spec_follows_the_clip_length() -> None:
    spec = load_spec("audio.yaml", AUDIO)
    assert spec.length.unit == "samples" and spec.length.max_windows == 4
    assert parse(spec.num_embeddings).uses_length
    code = to_python("ceil(length / processor.hop_length)", processor="self.fe")
    assert code == "math.ceil(length / self.fe.hop_length)"


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        # a length block needs a count over `length`
        (COUNT, "num_embeddings: 7\n", "num_embeddings", "over `length`"),
        (COUNT, "num_embeddings: ceil(shape[0] + length)\n", "num_embeddings", "not shape"),
        ("  window: processor.n_samples", "  window: length * 2", "window:", "cannot depend"),
        ("  max_windows: 4", "  max_windows: 0", "max_windows", "greater than or equal to 1"),
        ("  unit: samples ", "  unit: pixels ", "unit:", "samples"),
    ],
)
def test_length_block_errors(old, new, where, message) -> None:
    text = with_lines(old, new)
    error = error_of(text)
    assert message in error
    assert error.startswith(f"speech.yaml:{line_of(text, where)}:"), error


def test_length_without_its_block_and_with_the_wrong_encoder() -> None:
    start, stop = AUDIO.index("length:\n"), AUDIO.index("  max_windows: 4\n") + 17
    text = AUDIO[:start] + AUDIO[stop:]
    assert "needs a `length` block" in error_of(text)
    framed = with_lines("  downsample:", "  frames: {temporal_pool: 2}\n  downsample:")
    assert "fixed-window transformers encoder" in error_of(framed)


def test_boundary_tokens_must_differ() -> None:
    text = with_lines(
        'placeholder: "<audio>"', 'placeholder: "<audio>"\nboundary: {start: "<audio>"}'
    )
    assert "differ" in error_of(text)


def test_a_spec_with_length_and_boundary_generates_a_passing_package(tmp_path) -> None:
    text = with_lines(
        'placeholder: "<audio>"',
        'placeholder: "<audio>"\nboundary: {start: "<speech_start>", end: "<speech_end>"}',
    )
    spec = tmp_path / "speech.yaml"
    spec.write_text(text.replace("name: audio", "name: speech"), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["new-modality", "speech", "--spec", str(spec), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    config = "speech.SpeechConfig()"
    check = f"import speech; c = {config}; print(c.boundary_start, c.boundary_end, c.max_windows)"
    shown = subprocess.run([sys.executable, "-c", check], cwd=out, capture_output=True, text=True)
    assert shown.stdout.split() == ["<speech_start>", "<speech_end>", "4"], shown.stderr
    tests = sorted(out.rglob("test_*.py"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, tests)],
        cwd=out, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "test_num_embeddings_follow_the_input_length" in (tests[0].read_text())


def test_validate_names_unknown_processor_and_encoder_fields(tmp_path) -> None:
    text = AUDIO.replace("processor.hop_length", "processor.hop_lenght").replace(
        "window: processor.n_samples", "window: processor.padding_side"
    )
    path = tmp_path / "audio.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert (
        f"{path}:{line_of(text, 'window:')}: length.window: processor.padding_side is 'right'"
        " on WhisperFeatureExtractor, not a number"
    ) in result.output
    assert f"{path}:{line_of(text, 'num_embeddings:')}: num_embeddings: processor.hop_lenght" in (
        result.output
    )
    assert "did you mean 'hop_length'?" in result.output

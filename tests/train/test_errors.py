"""Bad input: each mistake is one line naming where; on_error: skip counts and
reports; an error mid-run keeps what was trained loadable."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.errors import ConfigError, DataError
from mmgen.train.config import load_config
from mmgen.train.loop import train
from tests.train.helpers import make_config, write_config

runner = CliRunner()


@pytest.fixture
def data(audio_data: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset, free to spoil."""
    return Path(shutil.copytree(audio_data, tmp_path / "data"))


def run_cli(config: Path, *args: str):
    return runner.invoke(app, ["train", str(config), *args])


def spoil(data: Path, line: str, *, at: int = 3) -> None:
    """Put ``line`` into train.jsonl as its line number ``at``."""
    path = data / "train.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(at - 1, line)
    path.write_text("\n".join(lines) + "\n")


def bad_row(sample_id: str, content: str, path: str) -> str:
    return json.dumps({
        "id": sample_id,
        "conversations": [{"role": "user", "content": content},
                          {"role": "assistant", "content": "C4 C4 C4"}],
        "modalities": [{"type": "audio", "value": {"path": path}}],
    })  # fmt: skip


def test_cli_reports_a_config_error_as_one_line(data: Path, tmp_path: Path) -> None:
    config = make_config(data, tmp_path / "run")
    config["packing"] = {"capacty": 128}
    result = run_cli(write_config(tmp_path / "train.yaml", config))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"error: {tmp_path / 'train.yaml'}:")
    assert lines[0].endswith("packing.capacty: unknown key; did you mean 'capacity'?")


def test_missing_data_file(data: Path, tmp_path: Path) -> None:
    (data / "train.jsonl").unlink()
    path = write_config(tmp_path / "train.yaml", make_config(data, tmp_path / "run"))
    found = r"train\.yaml:\d+: data\.train: file not found: .*train\.jsonl"
    with pytest.raises(ConfigError, match=found):
        train(load_config(path))


def test_malformed_jsonl_line_names_its_line(data: Path, tmp_path: Path) -> None:
    spoil(data, '{"id": "broken", "conversations": [', at=3)
    path = write_config(tmp_path / "train.yaml", make_config(data, tmp_path / "run"))
    with pytest.raises(DataError, match=r"train.jsonl:3: malformed JSONL line"):
        train(load_config(path))


def test_placeholder_count_mismatch_names_the_sample(data: Path, tmp_path: Path) -> None:
    row = bad_row("two-placeholders", "Compare <audio> and <audio>?", "media/train-00000.wav")
    spoil(data, row)
    path = write_config(tmp_path / "train.yaml", make_config(data, tmp_path / "run"))
    with pytest.raises(DataError, match=r"sample 'two-placeholders' .*2 <audio> placeholder\(s\)"):
        train(load_config(path))


def test_a_bad_held_out_sample_stops_the_run_before_training(data: Path, tmp_path: Path) -> None:
    # the test split is only answered at the end: checked up front, no training is wasted
    row = bad_row("held-out", "Compare <audio> and <audio>?", "media/train-00000.wav")
    with (data / "test.jsonl").open("a") as file:
        file.write(row + "\n")
    path = write_config(tmp_path / "train.yaml", make_config(data, tmp_path / "run"))
    with pytest.raises(DataError, match=r"sample 'held-out' .*2 <audio> placeholder\(s\)"):
        train(load_config(path))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_corrupt_media_names_the_sample_and_field(data: Path, tmp_path: Path) -> None:
    (data / "media" / "corrupt.wav").write_bytes(b"RIFF not really a wav file")
    spoil(data, bad_row("corrupt", "What notes are played in <audio>?", "media/corrupt.wav"))
    path = write_config(tmp_path / "train.yaml", make_config(data, tmp_path / "run"))
    with pytest.raises(DataError, match=r"sample 'corrupt' .*modalities\[0\].*cannot decode"):
        train(load_config(path))


def test_on_error_skip_counts_and_reports(data: Path, tmp_path: Path, capsys) -> None:
    (data / "media" / "corrupt.wav").write_bytes(b"RIFF not really a wav file")
    spoil(data, bad_row("corrupt", "What notes are played in <audio>?", "media/corrupt.wav"))
    spoil(data, "not json", at=5)
    test_rows = (data / "test.jsonl").read_text().splitlines()
    (data / "test.jsonl").write_text("\n".join(["{oops", *test_rows]) + "\n")
    config = make_config(data, tmp_path / "run", stages=[{"name": "full", "steps": 1}])
    config["data"]["on_error"] = "skip"
    result = train(load_config(write_config(tmp_path / "train.yaml", config)))
    assert result.steps == 1
    out = capsys.readouterr().out
    assert "data: train 48 of 50 samples kept; skipped 2 of 50 samples" in out
    assert "(1 malformed line, 1 unreadable media)" in out
    # the held-out split skips its malformed line too, and says so
    assert f"data: test {len(test_rows)} samples; skipped 1 sample (1 malformed line)" in out
    assert result.accuracy.total == len(test_rows)


def test_hidden_size_mismatch_names_the_config_line(data: Path, tmp_path: Path) -> None:
    config = make_config(data, tmp_path / "run")
    config["modalities"]["audio"]["config"]["hidden_size"] = 48
    path = write_config(tmp_path / "train.yaml", config)
    with pytest.raises(ConfigError) as caught:
        train(load_config(path))
    message = str(caught.value)
    assert "modalities.audio.config.hidden_size: 48, but the LLM's hidden size is 32" in message
    assert message.startswith(f"{path}:")


def test_mistyped_fields_passed_to_other_configs_are_named(data: Path, tmp_path: Path) -> None:
    """transformers' configs keep any keyword: a typo there must not be silently ignored."""
    config = make_config(data, tmp_path / "run")
    config["modalities"]["audio"]["config"]["max_bach_size"] = 4
    path = write_config(tmp_path / "train.yaml", config)
    with pytest.raises(ConfigError) as caught:
        train(load_config(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:")
    assert message.endswith(
        "modalities.audio.config.max_bach_size: unknown field of AudioConfig;"
        " did you mean 'max_batch_size'?"
    )

    from mmgen.train.config import RandomInit
    from mmgen.train.random_init import random_init_fields

    loaded = load_config(write_config(tmp_path / "ok.yaml", make_config(data, tmp_path / "run")))
    section = RandomInit(encoder={"d_model": 8, "pad_token_id": 0}, processor={"feature_size": 8})
    fields = random_init_fields(loaded, "audio", "audio", section, tmp_path / "init", write=False)
    assert set(fields) == {"encoder_name_or_path", "processor_name_or_path"}
    for part, key, owner, right in (
        ("encoder", "d_modl", "WhisperConfig", "d_model"),
        ("processor", "feature_sise", "WhisperFeatureExtractor", "feature_size"),
    ):
        section = RandomInit(**{part: {key: 8}})
        expected = f"random_init.{part}.{key}: unknown field of {owner}; did you mean '{right}'?"
        with pytest.raises(ConfigError, match=re.escape(expected)):
            random_init_fields(loaded, "audio", "audio", section, tmp_path / "init", write=False)


def test_unregistered_modality_suggests_generating_it(data: Path, tmp_path: Path) -> None:
    config = make_config(data, tmp_path / "run")
    config["modalities"]["audio"]["type"] = "audoi"
    path = write_config(tmp_path / "train.yaml", config)
    with pytest.raises(ConfigError, match=r"did you mean 'audio'.*mmgen new-modality"):
        train(load_config(path))


def test_an_error_mid_run_keeps_the_completed_steps(data, tmp_path, monkeypatch) -> None:
    from mmgen.model import MultimodalModel
    from mmgen.train.data import TrainData

    config = make_config(data, tmp_path / "run", checkpoint={"every": 10, "keep": 2})
    path = write_config(tmp_path / "train.yaml", config)
    calls = {"n": 0}
    real = TrainData.next_batch

    def failing(self):
        calls["n"] += 1
        if calls["n"] == 3:  # the third step's batch: a media file vanished mid-run
            raise DataError("media/train-00007.wav: file not found")
        return real(self)

    monkeypatch.setattr(TrainData, "next_batch", failing)
    with pytest.raises(DataError, match="file not found"):
        train(load_config(path))
    saved = tmp_path / "run" / "checkpoints" / "step-00000002"
    assert (saved / "trainer_state.json").is_file() and (saved / "manifest.json").is_file()
    MultimodalModel.from_pretrained(saved / "model")  # loadable
    monkeypatch.setattr(TrainData, "next_batch", real)
    result = train(load_config(path), resume="auto")
    assert result.steps == 4

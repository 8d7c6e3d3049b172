"""Training data that once crashed or trained on nothing (issue 16): each is one error line
naming the file (or, under ``on_error: skip``, counted under its reason with its first example)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.errors import DataError
from mmgen.train.config import load_config
from mmgen.train.loop import train
from tests.train.helpers import make_config, write_config

runner = CliRunner()


@pytest.fixture
def data(audio_data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(audio_data, tmp_path / "data"))


def rows(data: Path, split: str = "train") -> list[dict]:
    return [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]


def write_rows(data: Path, items: list[dict], split: str = "train") -> None:
    text = "".join(json.dumps(row) + "\n" for row in items)
    (data / f"{split}.jsonl").write_text(text)


def one_step(data: Path, tmp_path: Path, **data_options) -> Path:
    config = make_config(data, tmp_path / "run", stages=[{"name": "full", "steps": 1}])
    config["data"].update(data_options)
    return write_config(tmp_path / "train.yaml", config)


@pytest.mark.parametrize("name", ["train.jsonl", "train.json"])
def test_parquet_data_under_a_text_name_is_one_error(data, tmp_path, name):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"]}), data / name)
    config = one_step(data, tmp_path, train=str(data / name))
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{data / name}: holds parquet data (name it .parquet), not JSON text" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_non_utf8_bytes_in_a_row_are_a_malformed_line(data, tmp_path, capsys):
    lines = (data / "train.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"content": "', b'"content": "\xff', 1)
    (data / "train.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"train\.jsonl:3: malformed JSONL line: not UTF-8"):
        train(load_config(one_step(data, tmp_path)))
    result = train(load_config(one_step(data, tmp_path, on_error="skip")))
    assert result.steps == 1
    assert "skipped 1 of 48 samples (1 malformed line)" in capsys.readouterr().out


def test_lone_surrogates_in_a_row_are_counted_not_a_crash(data, tmp_path, capsys):
    items = rows(data)
    items[1]["conversations"][1]["content"] = "C4 \ud800 C4"  # json writes it as \ud800
    write_rows(data, items)
    with pytest.raises(
        DataError,
        match=r"train\.jsonl:2\): field conversations\[1\]\.content holds a lone surrogate",
    ):
        train(load_config(one_step(data, tmp_path)))
    result = train(load_config(one_step(data, tmp_path, on_error="skip")))
    assert result.steps == 1
    assert "(1 malformed row)" in capsys.readouterr().out


def test_skip_report_counts_every_reason_with_its_first_example(data, tmp_path, capsys):
    items = rows(data)
    items[3]["modalities"][0]["value"] = {"path": "media/nowhere.wav"}
    items[5]["modalities"][0]["value"] = {"path": "media/nowhere-either.wav"}
    items[7]["conversations"][0]["content"] += " <audio>"  # two placeholders, one item
    write_rows(data, items)
    with (data / "train.jsonl").open("a") as file:
        file.write("not json\n")
    train(load_config(one_step(data, tmp_path, on_error="skip")))
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("data: train"))
    assert (
        "skipped 4 of 49 samples (1 malformed line, 2 missing files, 1 placeholder mismatch)"
        in line
    )
    assert "first malformed line: " in line and "train.jsonl:49" in line
    assert "first missing file: " in line and "nowhere.wav" in line
    assert "nowhere-either.wav" not in line  # the first of each reason only
    assert "first placeholder mismatch: " in line and items[7]["id"] in line


def test_a_split_without_answers_is_an_error(data, tmp_path):
    items = rows(data)
    for row in items:
        row["conversations"] = row["conversations"][:1]  # the user turn only
    write_rows(data, items)
    config = one_step(data, tmp_path)
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "data.train: no sample has tokens to learn (no assistant answers)" in result.output
    assert "48 of 48 samples have none" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_samples_without_answers_are_counted(data, tmp_path, capsys):
    items = rows(data)
    for row in items[:5]:
        row["conversations"] = row["conversations"][:1]
    write_rows(data, items)
    train(load_config(one_step(data, tmp_path)))
    out = capsys.readouterr().out
    assert "5 without tokens to learn" in out


def test_non_utf8_config_is_one_line(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_bytes(b"seed: 0\nmodel:\n  llm: \xff\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == f"error: {config}:3: not UTF-8 text (byte 0xff)"


def test_a_fifo_as_data_is_refused_without_blocking(data, tmp_path):
    import os

    os.mkfifo(tmp_path / "rows.jsonl")
    config = one_step(data, tmp_path, train=str(tmp_path / "rows.jsonl"))
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "rows.jsonl: not a regular file (a device, FIFO or socket)" in result.output

"""The training commands through typer's CliRunner: demo-data, train -h, bench train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmgen.cli import app

runner = CliRunner()


def test_demo_data_writes_the_splits_and_tokenizer(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo-data", "audio", "--out", str(out), "--train", "3", "--eval", "2", "--test", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "tokenizer" / "tokenizer_config.json").is_file()
    splits = ("train", "eval", "test")
    counts = {s: len((out / f"{s}.jsonl").read_text().splitlines()) for s in splits}
    assert counts == {"train": 3, "eval": 2, "test": 1}


def test_unknown_demo_task_is_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo-data", "smell", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown demo task 'smell'; choose one of audio, image"


def test_train_help_names_torchrun() -> None:
    result = runner.invoke(app, ["train", "-h"])
    assert result.exit_code == 0
    assert "torchrun --nproc-per-node" in result.output and "--resume" in result.output


def test_bench_train_compares_every_layout(config_file) -> None:
    args = ["bench", "train", str(config_file()), "--steps", "4", "--rounds", "2", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    rows = {row["layout"]: row for row in report["rows"]}
    assert set(rows) == {"packed", "padded", "padded, length-grouped"}
    padded, grouped = rows["padded"], rows["padded, length-grouped"]
    assert padded["x padded"] == 1 and grouped["x grouped"] == 1
    for row in rows.values():
        assert row["tokens/s"] > 0 and 0 < row["useful slots"] <= 1
        assert row["x padded"] > 0 and row["x grouped"] > 0
    # the packed ratios are the medians (of two: the mean) of the rounds' ratios
    for column, label in (("x padded", "padded"), ("x grouped", "grouped")):
        per_round = [float(v) for v in report[f"packed / {label} per round"].split(", ")]
        assert len(per_round) == report["rounds"] == 2
        assert rows["packed"][column] == pytest.approx(sum(per_round) / 2, abs=0.01)


def test_a_stopped_run_prints_the_command_that_resumes_it(config_file, monkeypatch) -> None:
    from mmgen.train import loop

    stopped = loop.Result(steps=3, stopped_by=2, checkpoint=None, accuracy=None, output_dir=Path())
    monkeypatch.setattr(loop, "train", lambda config, **kwargs: stopped)
    path = config_file()
    overrides = ["output_dir=runs/try 2", "stages.0.steps=20"]
    args = ["train", str(path), *(a for o in overrides for a in ("--set", o))]
    result = runner.invoke(app, args)
    assert result.exit_code == 130
    # the run's overrides come along: without them --resume would look in another output_dir
    expected = f"{path} --set 'output_dir=runs/try 2' --set stages.0.steps=20 --resume"
    assert result.output.strip().splitlines()[-1] == f"resume with: mmgen train {expected}"

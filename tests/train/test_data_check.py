"""``mmgen data check``: every problem a run would meet, one ``file:line`` each, from the index
the run then reads; histograms and the projected packing agree with what training computes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.data.index import cache_dir
from tests.train.helpers import make_config, speech_config, write_config

runner = CliRunner()


def bad_rows(audio_data: Path, folder: Path) -> Path:
    """Ten good rows and one of each problem: line 3 a missing file, 5 malformed, 7 a
    placeholder without its item, 14 an empty answer, 15 longer than the packing budget."""
    rows = [json.loads(line) for line in (audio_data / "train.jsonl").read_text().splitlines()]
    for row in rows:  # media paths relative to the copy's folder
        row["modalities"][0]["value"]["path"] = str(
            audio_data / row["modalities"][0]["value"]["path"]
        )
    lines = [json.dumps(row) for row in rows[:10]]
    gone = dict(rows[0], id="gone", modalities=[{"type": "audio", "value": {"path": "nope.wav"}}])
    lines.insert(2, json.dumps(gone))
    lines.insert(4, "{not json")
    turns = [{"role": "user", "content": "no placeholder"}, {"role": "assistant", "content": "x"}]
    lines.insert(6, json.dumps(dict(rows[1], id="mismatch", conversations=turns)))
    empty = [{"role": "user", "content": "<audio>"}, {"role": "assistant", "content": " "}]
    lines.append(json.dumps(dict(rows[2], id="empty", conversations=empty)))
    long = [{"role": "user", "content": "<audio> " + "C5 " * 300},
            {"role": "assistant", "content": "A4"}]  # fmt: skip
    lines.append(json.dumps(dict(rows[3], id="long", conversations=long)))
    path = folder / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def check(*args: str):
    return runner.invoke(app, ["data", "check", *map(str, args)])


def problems(output: str) -> dict[int, str]:
    """line number -> the problem line about it."""
    found = {}
    for line in output.splitlines():
        match = re.match(r".*bad\.jsonl:(\d+): (.*)", line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


def test_every_problem_is_one_line_at_its_row(audio_data, config_file, tmp_path) -> None:
    data = bad_rows(audio_data, tmp_path)
    result = check(data, "--config", config_file())
    assert result.exit_code == 1, result.output
    found = problems(result.output)
    assert sorted(found) == [3, 5, 7, 14, 15]
    assert found[3].startswith("error: field modalities[0] (audio): file not found")
    assert found[5].startswith("error: malformed JSONL line")
    assert found[7].startswith("error: field conversations has 0 <audio> placeholder(s)")
    assert found[14].startswith("warning: no answer to learn")
    assert re.match(r"error: 3\d\d tokens, 1 item: over packing.capacity=256", found[15])
    assert "12 of 15 rows kept (1 malformed line, 1 missing file, 1 placeholder mismatch)" in (
        result.output
    )
    assert "5 problems: 4 errors (a run stops), 1 warning" in result.output
    assert "Traceback" not in result.output


def test_under_skip_bad_rows_are_left_out_and_nothing_stops(
    audio_data, config_file, tmp_path
) -> None:
    data = bad_rows(audio_data, tmp_path)
    options = ["--set", "data.on_error=skip", "--set", "packing.overlong=drop"]
    result = check(data, "--config", config_file(), *options)
    assert result.exit_code == 0, result.output
    found = problems(result.output)
    assert [found[n].split(":")[0] for n in (3, 5, 7, 14, 15)] == [
        "skipped", "skipped", "skipped", "warning", "skipped"]  # fmt: skip
    assert "over-long samples: 1 dropped, 0 cut" in result.output


@pytest.mark.parametrize("kind", ["built-in", "generated"])
def test_training_reads_the_index_the_check_built(
    audio_data, speech_project, tmp_path, monkeypatch, kind
) -> None:
    """The check's processor (no LLM weights) measures exactly what training's does: a run
    afterwards finds every split's index and measures nothing."""
    from mmgen.train import build
    from mmgen.train.config import load_config
    from mmgen.train.distributed import World

    make = make_config if kind == "built-in" else speech_config
    path = write_config(tmp_path / "train.yaml", make(audio_data, tmp_path / "run"))
    result = check(path)
    assert result.exit_code == 0, result.output
    kept = sorted(cache_dir().glob("index/*.safetensors"))
    assert len(kept) >= 3  # train, eval, test
    import torch

    config = load_config(path)
    build.register_project(config)
    tokenizer = build.load_tokenizer(config)
    model = build.build_model(config, tokenizer, World(0, 1, 0, torch.device("cpu")))
    processor = build.build_processor(config, model, tokenizer)
    monkeypatch.setattr(processor, "measure", lambda *a, **k: pytest.fail("measured again"))
    for split in ("train", "eval"):
        assert len(build.load_split(config, processor, split)) > 0
    assert sorted(cache_dir().glob("index/*.safetensors")) == kept


def test_histograms_and_packing_are_what_training_computes(audio_data, config_file) -> None:
    from mmgen.data.sampler import TokenBudgetSampler
    from mmgen.train import build
    from mmgen.train.check import check_data
    from mmgen.train.config import load_config

    config = load_config(config_file(packing={"capacity": 100, "overlong": "drop"}))
    result = check_data(config, world_size=2)
    train = result.sources[0]
    assert [s.split for s in result.sources] == ["train", "eval", "test"]
    assert train.total == 48 and len(train.index.rows) == 48
    processor = build.data_processor(config, build.load_tokenizer(config))
    dataset = build.load_split(config, processor, "train")
    assert np.array_equal(train.index.lengths, dataset.lengths.numpy())
    sampler = TokenBudgetSampler(dataset, 100, overlong="drop", shuffle=True, seed=config.seed,
                                 num_replicas=2, rank=0)  # fmt: skip
    stats = sampler.stats(0)
    expected = (f"{stats['packs']} packs of <= 100 tokens (bfd) per epoch, "
                f"{stats['efficiency']:.1%} full; {stats['steps']} steps per epoch per rank"
                " (2 ranks, 1 pack per step)")  # fmt: skip
    assert result.packing[0] == expected


def test_histogram_bins_are_powers_of_two() -> None:
    from mmgen.train.check import histogram

    lines = histogram(np.array([1, 2, 3, 3, 9, 15]))
    counts = [(line.split()[0], int(line.split()[-1])) for line in lines]
    assert counts == [("1-1", 1), ("2-3", 3), ("4-7", 0), ("8-15", 2)]


def test_held_out_rows_need_a_reference_answer(audio_data, tmp_path) -> None:
    rows = (audio_data / "test.jsonl").read_text().splitlines()
    row = json.loads(rows[1])
    row["conversations"] = row["conversations"][:1]  # the question alone
    for entry in row["modalities"]:
        entry["value"]["path"] = str(audio_data / entry["value"]["path"])
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps(row) + "\n")
    config = make_config(audio_data, tmp_path / "run")
    config["data"]["test"] = str(test)
    result = check(write_config(tmp_path / "train.yaml", config))
    assert result.exit_code == 1, result.output
    assert f"{test}:1: error: no final assistant turn to compare answers with" in result.output


def test_a_mixture_is_checked_source_by_source(audio_data, tmp_path) -> None:
    config = make_config(audio_data, tmp_path / "run")
    config["data"]["train"] = [
        {"path": str(audio_data / "train.jsonl"), "weight": 0.75},
        {"path": str(audio_data / "eval.jsonl"), "weight": 0.25, "name": "more"},
    ]
    result = check(write_config(tmp_path / "train.yaml", config))
    assert result.exit_code == 0, result.output
    assert re.search(r"^train\[train\]: .*train.jsonl: 48 of 48 rows kept", result.output, re.M)
    assert re.search(r"^train\[more\]: .*eval.jsonl: 16 of 16 rows kept", result.output, re.M)


def test_a_data_file_needs_a_config(audio_data, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = check(audio_data / "train.jsonl")
    assert result.exit_code == 1
    assert result.output.strip().endswith("name the training config with --config")
    result = check(tmp_path / "absent.jsonl")
    assert result.exit_code == 1 and "data file not found" in result.output

"""``eval.metrics``: training's evaluations score the generated answers with mmgen.metrics,
logged beside the exact-match accuracy; an unknown name is an error at its config line."""

from __future__ import annotations

import json

import pytest

import mmgen
from mmgen.errors import ConfigError
from mmgen.metrics import score
from mmgen.train.config import load_config
from mmgen.train.loop import train
from mmgen.train.metrics import read_metrics


def test_evaluations_log_the_configured_metrics(config_file, audio_data) -> None:
    eval_section = {"accuracy_samples": 4, "max_new_tokens": 4,
                    "metrics": ["exact_match", "token_f1", "chrf"]}  # fmt: skip
    config = load_config(config_file(stages=[{"name": "full", "steps": 2}], eval=eval_section))
    result = train(config)
    records = [r for r in read_metrics(result.output_dir / "metrics.jsonl") if r["kind"] == "test"]
    assert len(records) == 1
    test = records[0]
    assert set(test) >= {"accuracy", "token_f1", "chrf"} and "exact_match" not in test
    # the same answers from the saved model, scored here
    loaded = mmgen.load(result.output_dir)
    rows = [json.loads(line) for line in (audio_data / "test.jsonl").read_text().splitlines()]
    answers = loaded.generate([_absolute(row, audio_data) for row in rows], max_new_tokens=4)
    predicted = [" ".join(a.text.split()) for a in answers]
    references = [row["conversations"][-1]["content"] for row in rows]
    expected = score(["exact_match", "token_f1", "chrf"], predicted, references)
    assert test["accuracy"] == expected["exact_match"]
    assert test["token_f1"] == pytest.approx(expected["token_f1"])
    assert test["chrf"] == pytest.approx(expected["chrf"])


def _absolute(row: dict, folder) -> dict:
    for entry in row["modalities"]:
        entry["value"]["path"] = str(folder / entry["value"]["path"])
    return row


def test_an_unknown_metric_is_an_error_at_its_line(config_file) -> None:
    path = config_file(eval={"metrics": ["exact_match", "blue"]})
    with pytest.raises(ConfigError, match=r"train.yaml:\d+: eval.metrics: .*unknown metric 'blue'"):
        load_config(path)

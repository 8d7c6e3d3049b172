"""The config switches for activation checkpointing (``model.gradient_checkpointing``,
``modalities.NAME.gradient_checkpointing``) reach the run, which trains as it does without
them (the gradients themselves: ``tests/test_model_checkpointing.py``)."""

from __future__ import annotations

import pytest

from mmgen.train.config import load_config
from mmgen.train.loop import train
from tests.train.helpers import train_losses


def test_a_checkpointed_run_trains_like_a_plain_one(config_file, tmp_path, capsys) -> None:
    path = config_file(stages=[{"name": "full", "steps": 3}])  # the encoder trains too
    plain = train(load_config(path)).output_dir
    assert "activation checkpointing" not in capsys.readouterr().out
    switches = ["model.gradient_checkpointing=true", "modalities.audio.gradient_checkpointing=true"]
    config = load_config(path, [*switches, f"output_dir={tmp_path / 'checkpointed'}"])
    result = train(config)
    assert "activation checkpointing: llm, audio encoder (per layer)" in capsys.readouterr().out
    expected, got = train_losses(plain), train_losses(result.output_dir)
    assert sorted(got) == [1, 2, 3]
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], rel=1e-5), step

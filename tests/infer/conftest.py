"""Fixtures for using a trained model: a tiny run trained once per session on the synthetic
audio data, with the project's generated ``speech`` modality (see tests/train/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import audio_data, speech_project  # noqa: F401  (fixtures)
from tests.train.helpers import speech_config, write_config


@pytest.fixture(scope="session")
def trained_run(audio_data, speech_project, tmp_path_factory) -> Path:  # noqa: F811
    """A run folder: final model/ and checkpoints at steps 4 and 6, trained with the plain chat
    format and max_length 64 (data options the loaded processor must keep)."""
    from mmgen.train.config import load_config
    from mmgen.train.loop import train

    folder = tmp_path_factory.mktemp("trained")
    config = speech_config(audio_data, folder / "run", stages=[{"name": "full", "steps": 6}])
    config["data"].update(chat_template="plain", max_length=64)
    config["checkpoint"] = {"every": 2, "keep": 2}
    result = train(load_config(write_config(folder / "train.yaml", config)))
    return result.output_dir

"""Fixtures for the training tests: a tiny synthetic audio dataset (written once per session)
and training configs around it (see ``helpers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.train.helpers import make_config, write_config


@pytest.fixture(scope="session")
def audio_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 training clips, 16 eval, 16 test, and the word-level tokenizer."""
    from mmgen.demo_data import write_demo_data

    folder = tmp_path_factory.mktemp("demo-audio")
    write_demo_data("audio", folder, {"train": 48, "eval": 16, "test": 16}, seed=0)
    return folder


@pytest.fixture
def config_file(audio_data: Path, tmp_path: Path):
    """``config_file(**sections) -> path`` of a config written into ``tmp_path``."""

    def make(**sections: Any) -> Path:
        config = make_config(audio_data, tmp_path / "run", **sections)
        return write_config(tmp_path / "train.yaml", config)

    return make

"""Fixtures for the training tests: a tiny synthetic audio dataset (written once per session),
a project with a generated audio modality, and training configs around them (see ``helpers``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.train.helpers import SPEECH_PACKAGE, make_config, write_config


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


@pytest.fixture(scope="session")
def speech_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by ``mmgen init`` with the built-in audio spec generated as ``speech``:
    a modality whose config names its encoder and feature extractor by path (the asset fields a
    checkpoint must carry). Importable in this process and in subprocesses (``PYTHONPATH``)."""
    from typer.testing import CliRunner

    from mmgen.cli import app
    from mmgen.spec.catalog import builtin_specs

    project = tmp_path_factory.mktemp("project") / SPEECH_PACKAGE
    runner = CliRunner()
    for args in (
        ["init", str(project)],
        ["new-modality", "speech", "--spec", str(builtin_specs()["audio"]), "--project",
         str(project)],
    ):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    sys.path.insert(0, str(project))
    return project

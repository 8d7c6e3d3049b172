"""Fixtures for using a trained model: a tiny run trained once per session on the synthetic
audio data, with the project's generated ``speech`` modality (see tests/train/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import audio_data, speech_project  # noqa: F401  (fixtures)
from tests.train.helpers import make_config, speech_config, write_config

STEPS = 60  # enough for answers made of note names (not yet the right ones)


@pytest.fixture(scope="session")
def trained_run(audio_data, speech_project, tmp_path_factory) -> Path:  # noqa: F811
    """A run folder: final model/ and its last two checkpoints (every 2 steps), trained with the
    plain chat format and max_length 64 (data options the loaded processor must keep)."""
    from mmgen.train.config import load_config
    from mmgen.train.loop import train

    folder = tmp_path_factory.mktemp("trained")
    config = speech_config(audio_data, folder / "run", stages=[{"name": "full", "steps": STEPS}])
    config["data"].update(chat_template="plain", max_length=64)
    config["checkpoint"] = {"every": 2, "keep": 2}
    config["eval"] = {"accuracy_samples": 0, "max_new_tokens": 8}
    result = train(load_config(write_config(folder / "train.yaml", config)))
    return result.output_dir


@pytest.fixture(scope="session")
def image_data(tmp_path_factory) -> Path:
    """The image demo task (coloured shapes), 8 training images."""
    from mmgen.demo_data import write_demo_data

    folder = tmp_path_factory.mktemp("demo-image")
    write_demo_data("image", folder, {"train": 8, "eval": 4, "test": 4}, seed=0)
    return folder


@pytest.fixture(scope="session")
def image_lora_run(image_data, tmp_path_factory) -> Path:
    """A run of mmgen's built-in image modality (tiny random-init CLIP, MLP projector): two
    full steps, then two steps of LoRA adapters (added at the second stage, at a learning rate
    high enough that they change the logits clearly), with the plain chat format."""
    from mmgen.train.config import load_config
    from mmgen.train.loop import train

    folder = tmp_path_factory.mktemp("image-lora")
    stages = [{"name": "full", "steps": 2}, {"name": "lora", "steps": 2, "lr": 3e-2}]
    config = make_config(image_data, folder / "run", stages=stages)
    config["modalities"] = {"image": {"type": "image", "random_init": {}}}
    config["data"].update(chat_template="plain")
    config["schedule"] = {"kind": "constant"}
    config["eval"] = {"accuracy_samples": 0, "max_new_tokens": 4}
    result = train(load_config(write_config(folder / "train.yaml", config)))
    return result.output_dir


@pytest.fixture(scope="session")
def image_run(image_data, tmp_path_factory) -> Path:
    """A run of mmgen's built-in image modality (the spec's tiny CLIP) on the demo shapes."""
    from mmgen.train.config import load_config
    from mmgen.train.loop import train

    folder = tmp_path_factory.mktemp("image-run")
    config = make_config(image_data, folder / "run", stages=[{"name": "full", "steps": 2}])
    config["modalities"] = {"image": {"type": "image", "random_init": {}}}
    config["eval"] = {"accuracy_samples": 0, "max_new_tokens": 4}
    return train(load_config(write_config(folder / "train.yaml", config))).output_dir

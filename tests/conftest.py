"""Fixtures for the model-side tests (tiny checkpoints saved once per session; see
tests/helpers/tiny_models.py). Names start with ``model_`` or ``tiny_``."""

from __future__ import annotations

import os

import pytest
from helpers.tiny_models import save_tiny_clip, save_tiny_whisper, tiny_tokenizer


@pytest.fixture(scope="session")
def model_clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def model_xray_dir(tmp_path_factory):
    """A second tiny CLIP (other weights), for a second image-like modality."""
    return save_tiny_clip(tmp_path_factory.mktemp("xray"), seed=1)


@pytest.fixture(scope="session")
def model_whisper_dir(tmp_path_factory):
    return save_tiny_whisper(tmp_path_factory.mktemp("whisper"))


@pytest.fixture
def tiny_llm_tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session", autouse=True)
def mmgen_cache(tmp_path_factory):
    """Data indexes (and anything else mmgen caches) go to a folder of this test session, not
    the user's ~/.cache/mmgen; subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("mmgen-cache")
    os.environ["MMGEN_CACHE"] = str(folder)
    return folder

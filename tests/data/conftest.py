"""Fixtures for the data-side tests (built from ``helpers.data_samples``)."""

from __future__ import annotations

import pytest
from helpers.data_samples import CHATML, make_processors, make_tokenizer


@pytest.fixture
def chat_tokenizer():
    return make_tokenizer(CHATML)


@pytest.fixture
def plain_tokenizer():
    return make_tokenizer(None)


@pytest.fixture
def processors():
    return make_processors()

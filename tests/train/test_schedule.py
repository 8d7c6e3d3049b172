"""The LR multiplier against the formulas it implements."""

from __future__ import annotations

import math

import pytest

from mmgen.train.schedule import lr_multiplier


def test_warmup_rises_linearly_then_linear_decay_reaches_the_floor() -> None:
    factor = lr_multiplier("linear", total_steps=11, warmup_steps=4, min_ratio=0.1)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0
    # steps 4..10 decay linearly from 1 to 0.1
    for step in range(4, 11):
        expected = 0.1 + 0.9 * (1 - (step - 4) / 6)
        assert factor(step) == pytest.approx(expected)


def test_cosine_follows_half_a_cosine() -> None:
    factor = lr_multiplier("cosine", total_steps=21, warmup_steps=0)
    assert factor(0) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(0.5)
    assert factor(20) == pytest.approx(0.0, abs=1e-12)
    assert factor(5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_constant_after_warmup() -> None:
    factor = lr_multiplier("constant", total_steps=5, warmup_steps=2)
    assert [factor(s) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]


BAD = [("linear", 0, 0, 0.0), ("linear", 5, -1, 0.0), ("cosine", 5, 0, 2.0), ("step", 5, 0, 0)]


@pytest.mark.parametrize("args", BAD)
def test_bad_arguments_are_errors(args) -> None:
    with pytest.raises(ValueError):
        lr_multiplier(*args)

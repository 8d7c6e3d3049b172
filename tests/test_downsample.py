"""Token downsampling and temporal pooling against plain-torch references."""

import math

import pytest
import torch

from mmgen.nn.downsample import TokenDownsample, downsampled_length, temporal_pool


@pytest.mark.parametrize("n", [1, 7, 8, 9, 16])
@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_avg_matches_mean_of_each_window(n, factor):
    x = torch.randn(2, n, 5)
    out = TokenDownsample("avg", factor)(x)
    rows = math.ceil(n / factor)
    assert out.shape == (2, rows, 5) and rows == downsampled_length(n, factor)
    for r in range(rows):
        window = x[:, r * factor : (r + 1) * factor]  # the tail window holds what is left
        torch.testing.assert_close(out[:, r], window.mean(dim=1))


@pytest.mark.parametrize("n", [1, 6, 7])
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_concat_stacks_neighbours_and_zero_pads(n, factor):
    x = torch.randn(3, n, 4)
    out = TokenDownsample("concat", factor)(x)
    rows = math.ceil(n / factor)
    assert out.shape == (3, rows, 4 * factor)
    padded = torch.cat([x, torch.zeros(3, rows * factor - n, 4)], dim=1)
    for r in range(rows):
        expected = torch.cat([padded[:, r * factor + k] for k in range(factor)], dim=-1)
        torch.testing.assert_close(out[:, r], expected)


def test_two_dim_input_and_out_features():
    x = torch.randn(10, 6)
    assert TokenDownsample("avg", 4)(x).shape == (3, 6)
    assert TokenDownsample("concat", 4)(x).shape == (3, 24)
    assert TokenDownsample("concat", 3).out_features(6) == 18
    assert TokenDownsample("avg", 3).out_features(6) == 6


def test_gradients_flow():
    x = torch.randn(2, 5, 3, requires_grad=True)
    TokenDownsample("avg", 2)(x).sum().backward()
    assert x.grad is not None and torch.all(x.grad > 0)


@pytest.mark.parametrize("bad", [("max", 2), ("avg", 0), ("concat", 1.5)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError, match="downsample"):
        TokenDownsample(*bad)


def test_temporal_pool_averages_frames_per_patch():
    frames = torch.randn(2, 5, 3, 4)  # (B, T, P, D)
    out = temporal_pool(frames, 2)
    assert out.shape == (2, 3, 3, 4)
    torch.testing.assert_close(out[:, 0], frames[:, 0:2].mean(dim=1))
    torch.testing.assert_close(out[:, 2], frames[:, 4])
    with pytest.raises(ValueError, match="B, T, P, D"):
        temporal_pool(torch.randn(2, 3, 4), 2)

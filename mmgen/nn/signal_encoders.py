"""Small built-in encoders for signals (ECG, EEG, IMU, ...) that have no pretrained model.

Both take ``(B, C, L)`` (channels, samples) and return ``(B, N, hidden_size)`` token rows; both
say how many rows an input of length ``L`` becomes (``output_length``), which a spec's
``num_embeddings`` formula mirrors.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Conv1dEncoder(nn.Module):
    """A stack of ``layers`` strided 1-D convolutions with GELU and GroupNorm.

    Each layer divides the length by ``stride`` (rounding up: "same" padding), so ``L`` samples
    become ``ceil(L / stride**layers)`` rows of ``hidden_size``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_size: int = 256,
        layers: int = 4,
        kernel_size: int = 7,
        stride: int = 2,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if min(in_channels, hidden_size, layers, stride) < 1:
            raise ValueError("in_channels, hidden_size, layers and stride must be >= 1")
        self.hidden_size = hidden_size
        self.stride = stride
        self.num_layers = layers
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(layers):
            blocks += [
                nn.Conv1d(channels, hidden_size, kernel_size, stride, padding=kernel_size // 2),
                nn.GroupNorm(1, hidden_size),
                nn.GELU(),
            ]
            channels = hidden_size
        self.layers = nn.Sequential(*blocks)

    def output_length(self, length: int) -> int:
        for _ in range(self.num_layers):
            length = math.ceil(length / self.stride)
        return length

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        if signals.dim() != 3:
            raise ValueError(f"expected (B, C, L) signals, got shape {tuple(signals.shape)}")
        return self.layers(signals).transpose(1, 2)


class MLPEncoder(nn.Module):
    """Cuts the signal into windows of ``patch`` samples (zero-padding the tail) and maps each
    window, all channels together, through an MLP: ``L`` samples become ``ceil(L / patch)`` rows.
    """

    def __init__(
        self, in_channels: int = 1, hidden_size: int = 256, layers: int = 2, patch: int = 16
    ) -> None:
        super().__init__()
        if min(in_channels, hidden_size, layers, patch) < 1:
            raise ValueError("in_channels, hidden_size, layers and patch must be >= 1")
        self.hidden_size = hidden_size
        self.patch = patch
        modules: list[nn.Module] = [nn.Linear(in_channels * patch, hidden_size)]
        for _ in range(layers - 1):
            modules += [nn.GELU(), nn.Linear(hidden_size, hidden_size)]
        self.mlp = nn.Sequential(*modules)

    def output_length(self, length: int) -> int:
        return math.ceil(length / self.patch)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        if signals.dim() != 3:
            raise ValueError(f"expected (B, C, L) signals, got shape {tuple(signals.shape)}")
        b, c, length = signals.shape
        rows = self.output_length(length)
        padded = nn.functional.pad(signals, (0, rows * self.patch - length))
        windows = padded.reshape(b, c, rows, self.patch).permute(0, 2, 1, 3).reshape(b, rows, -1)
        return self.mlp(windows)

"""Token downsampling for encoder outputs: fewer, wider (or averaged) rows per item.

Both modes shorten ``N`` tokens to ``ceil(N / factor)``; the tail is zero-padded for ``concat`` and
averaged over the tokens it has for ``avg``, so no token is dropped and the count is predictable
(``math.ceil(n / factor)``) — the processor's ``num_embeddings`` formula relies on that.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

Mode = Literal["avg", "concat"]


def downsampled_length(n: int, factor: int) -> int:
    return math.ceil(n / factor)


class TokenDownsample(nn.Module):
    """``(..., N, D) -> (..., ceil(N/factor), D)`` for ``avg``, or
    ``(..., ceil(N/factor), D*factor)`` for ``concat`` (strided concatenation of neighbours, as in
    Qwen-Audio / Ultravox stacking).
    ``factor=1`` is the identity.
    """

    def __init__(self, mode: Mode = "avg", factor: int = 1) -> None:
        super().__init__()
        if mode not in ("avg", "concat"):
            raise ValueError(f"downsample mode must be 'avg' or 'concat', got {mode!r}")
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"downsample factor must be an integer >= 1, got {factor!r}")
        self.mode = mode
        self.factor = factor

    def out_features(self, width: int) -> int:
        """Row width after downsampling rows of ``width``."""
        return width * self.factor if self.mode == "concat" else width

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return hidden
        if hidden.dim() < 2:
            raise ValueError(f"expected (..., N, D) token rows, got shape {tuple(hidden.shape)}")
        *lead, n, d = hidden.shape
        rows = downsampled_length(n, self.factor)
        if self.mode == "concat":
            padded = F.pad(hidden, (0, 0, 0, rows * self.factor - n))
            return padded.reshape(*lead, rows, self.factor * d)
        # avg: ceil_mode keeps the short tail window, averaged over the tokens it really has
        flat = hidden.reshape(-1, n, d).transpose(1, 2)
        pooled = F.avg_pool1d(flat, self.factor, self.factor, ceil_mode=True)
        return pooled.transpose(1, 2).reshape(*lead, rows, d)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, factor={self.factor}"


def temporal_pool(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """Average every ``factor`` consecutive frames: ``(B, T, P, D) -> (B, ceil(T/f), P, D)``."""
    if frames.dim() != 4:
        raise ValueError(f"expected (B, T, P, D) frame features, got shape {tuple(frames.shape)}")
    b, t, p, d = frames.shape
    by_patch = frames.permute(0, 2, 1, 3).reshape(b * p, t, d)  # pool over T for every patch
    pooled = TokenDownsample("avg", factor)(by_patch)
    return pooled.reshape(b, p, -1, d).permute(0, 2, 1, 3)

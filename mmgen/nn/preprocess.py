"""Built-in numeric preprocessing for signals that have no transformers processor.

``SignalPreprocessor`` turns a 1-D ``(L,)`` or 2-D ``(C, L)`` array into a float32 ``(C, L)``
tensor: resampled to one rate, normalised per channel, cropped or zero-padded to a fixed length.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

Normalize = Literal["zscore", "minmax", "none"]


class SignalPreprocessor:
    """Args:
    sampling_rate: target rate in Hz; inputs that say their own rate are resampled to it
        (linear interpolation; None keeps every input as it is).
    length: crop (centre) or zero-pad (end) to this many samples; None keeps the length.
    normalize: per-channel ``zscore`` (mean 0, std 1), ``minmax`` (to [-1, 1]) or ``none``.
    channels: expected channel count; a 1-D input counts as one channel.
    """

    def __init__(
        self,
        sampling_rate: int | None = None,
        length: int | None = None,
        normalize: Normalize = "zscore",
        channels: int = 1,
    ) -> None:
        if normalize not in ("zscore", "minmax", "none"):
            raise ValueError(f"normalize must be zscore, minmax or none, got {normalize!r}")
        self.sampling_rate = sampling_rate
        self.length = length
        self.normalize = normalize
        self.channels = channels

    def output_shape(self) -> tuple[int, int] | None:
        """``(channels, length)`` of every output when a length is set, else None (the length
        then follows the input's)."""
        return (self.channels, self.length) if self.length is not None else None

    def __call__(self, signal: Any, sampling_rate: int | None = None) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(signal, dtype=np.float32))
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, L) signal, got shape {tuple(x.shape)}")
        if sampling_rate and self.sampling_rate and sampling_rate != self.sampling_rate:
            size = max(1, round(x.shape[-1] * self.sampling_rate / sampling_rate))
            x = F.interpolate(x[None], size=size, mode="linear", align_corners=False)[0]
        x = self._normalize(x)
        if self.length is not None:
            x = self._fit(x, self.length)
        return x

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize == "zscore":
            return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True).clamp_min(1e-6)
        if self.normalize == "minmax":
            low, high = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
            return 2 * (x - low) / (high - low).clamp_min(1e-6) - 1
        return x

    @staticmethod
    def _fit(x: torch.Tensor, length: int) -> torch.Tensor:
        n = x.shape[-1]
        if n >= length:
            start = (n - length) // 2
            return x[:, start : start + length]
        return F.pad(x, (0, length - n))

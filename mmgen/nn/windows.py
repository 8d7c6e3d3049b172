"""Inputs whose number of embeddings follows their real length (a spec's ``length`` block).

An encoder such as Whisper sees fixed windows (30 s of audio as 3,000 feature frames). mmgen
splits an input into consecutive windows (at most ``max_windows``; the rest is cut), the
processor turns each window into the encoder's padded input, and the modality keeps, in every
window, only the encoder positions that cover real input before downsampling: a 2-second clip
costs the ~50 embeddings that cover it instead of the 750 of a whole window.

The processed value of such an item is one tensor ``(windows, channels + 1, frames)``: the
encoder's input for each window with the window's frame mask (1 for a real frame, 0 for
padding) as its last channel row, so the real length travels with the value through every
collator, cache and device copy (:func:`with_frame_mask`, :func:`split_frame_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def window_lengths(length: int, window: int, max_windows: int) -> list[int]:
    """The real length of each window of an input of ``length`` (the last may be shorter)."""
    if window < 1 or max_windows < 1:
        raise ValueError(f"window ({window}) and max_windows ({max_windows}) must be >= 1")
    if length < 1:
        raise ValueError(f"an input of length {length} has no window to encode")
    kept = min(length, window * max_windows)
    full, rest = divmod(kept, window)
    return [window] * full + ([rest] if rest else [])


def split_windows(value: Any, window: int, max_windows: int) -> list[Any]:
    """``value`` (an array or tensor, length on its last axis) cut into consecutive windows."""
    lengths = window_lengths(value.shape[-1], window, max_windows)
    return [value[..., i * window : i * window + n] for i, n in enumerate(lengths)]


def with_frame_mask(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(W, C, F)`` window features and their ``(W, F)`` frame mask as one ``(W, C + 1, F)``."""
    if features.dim() != 3 or mask.shape != (features.shape[0], features.shape[-1]):
        raise ValueError(
            f"expected (windows, channels, frames) features and a (windows, frames) mask, got "
            f"{tuple(features.shape)} and {tuple(mask.shape)}"
        )
    return torch.cat([features, mask[:, None, :].to(features.dtype)], dim=1)


def split_frame_mask(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A :func:`with_frame_mask` value back as ``(W, C, F)`` features and ``(W,)`` real frames."""
    if value.dim() != 3 or value.shape[1] < 2:
        raise ValueError(
            f"expected a (windows, channels + 1, frames) value with its frame mask as the last "
            f"channel, got shape {tuple(value.shape)}"
        )
    return value[:, :-1], (value[:, -1] > 0.5).sum(dim=-1)


def covering_positions(
    frames: torch.Tensor | Sequence[int], positions: int, window: int
) -> list[int]:
    """How many of an encoder's ``positions`` output rows cover ``frames`` real input frames of
    a ``window``-frame input (a uniform stride: ``ceil(frames * positions / window)``)."""
    return [-(-int(n) * positions // window) for n in frames]

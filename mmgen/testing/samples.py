"""Synthetic dataset values for generated tests: one small generator per kind of data.

Each returns what a dataset entry's ``value`` holds (WAV or PNG bytes, an array, a string), so a
generated test runs the real loader on it. ``seed`` changes the content and, for kinds whose
length may vary, the length too — the tests check variable-length batches that way.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

_WORDS = ["the", "heart", "rate", "rose", "after", "a", "long", "walk", "and", "settled"]


def tone(seed: int = 0, *, seconds: float = 1.0, sampling_rate: int = 16000) -> bytes:
    """A sine tone (220-880 Hz) as 16-bit mono WAV bytes."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate * (1 + 0.25 * (seed % 3)))) / sampling_rate
    wave = 0.5 * np.sin(2 * np.pi * rng.uniform(220, 880) * t)
    buffer = io.BytesIO()
    soundfile.write(buffer, wave.astype(np.float32), sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def image(seed: int = 0, *, width: int = 64, height: int = 48) -> bytes:
    """A random RGB image as PNG bytes (the size varies with the seed)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    size = (height + 8 * (seed % 3), width + 16 * (seed % 2), 3)
    pixels = rng.integers(0, 256, size=size, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def video(seed: int = 0, *, frames: int = 8, width: int = 32, height: int = 32) -> np.ndarray:
    """A uint8 ``(T, H, W, 3)`` clip of a square drifting over noise."""
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 64, size=(frames + 2 * (seed % 2), height, width, 3), dtype=np.uint8)
    for i in range(clip.shape[0]):
        x = (i * 3) % max(1, width - 8)
        clip[i, 4:12, x : x + 8] = 255
    return clip


def text(seed: int = 0, *, words: int = 24) -> str:
    """A sentence of ``words`` words (a few more for odd seeds)."""
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(_WORDS, size=words + 9 * (seed % 2))) + "."


def signal(
    seed: int = 0, *, seconds: float = 2.0, sampling_rate: int = 250, channels: int = 1
) -> list[list[float]]:
    """A heartbeat-like ``(channels, L)`` trace: sharp peaks at ~1 Hz over a slow drift."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sampling_rate * (1 + 0.2 * (seed % 2)))
    t = np.arange(n) / sampling_rate
    beat = np.exp(-(((t * rng.uniform(0.9, 1.4)) % 1.0 - 0.5) ** 2) / 0.001)
    rows = [beat + 0.1 * np.sin(2 * np.pi * 0.3 * t + c) for c in range(channels)]
    return np.stack(rows).astype(np.float32).tolist()


GENERATORS: dict[str, Callable[..., Any]] = {
    "tone": tone,
    "image": image,
    "video": video,
    "text": text,
    "signal": signal,
}


def synthetic_value(kind: str, seed: int = 0, **options: Any) -> Any:
    if kind not in GENERATORS:
        raise ValueError(f"unknown sample kind {kind!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[kind](seed, **options)

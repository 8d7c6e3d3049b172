"""``raw-audio``: the model-agnostic audio loader (soundfile decode, soxr resampling)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import soundfile
import soxr

from mmgen.errors import DataError
from mmgen.loaders._source import classify
from mmgen.modality.base import BaseModalityLoader
from mmgen.modality.registry import AutoModalityLoader

# the longest audio a loader decodes, and the most channels: a header can claim hours of
# audio in a small file, and decoding it would take that much memory
MAX_SECONDS = 3600.0
MAX_CHANNELS = 64


def _check_size(frames: int, rate: float | None, channels: int, max_seconds: float) -> None:
    if channels > MAX_CHANNELS:
        raise DataError(
            f"the audio has {channels} channels, more than {MAX_CHANNELS}", reason="media too large"
        )
    if rate and frames / rate > max_seconds:
        raise DataError(
            f"the audio lasts {frames / rate:,.1f} s ({frames:,} frames at {rate} Hz), more than"
            f" the loader's max_seconds={max_seconds:g}",
            reason="media too large",
        )


def _reader(max_seconds: float):
    def read(handle) -> tuple[np.ndarray, int]:
        with soundfile.SoundFile(handle) as opened:
            # from the header, before anything is decoded
            _check_size(opened.frames, opened.samplerate, opened.channels, max_seconds)
            # always_2d: (frames, channels) for mono and multichannel alike
            return opened.read(dtype="float32", always_2d=True), opened.samplerate

    return read


@AutoModalityLoader.register("raw-audio")
class RawAudioLoader(BaseModalityLoader):
    """Loads audio from bytes, a path (any format libsndfile reads: wav, flac, ogg, mp3) or an
    array, and returns a mono float32 waveform ``(samples,)`` at ``sampling_rate``.

    Args:
        sampling_rate: the rate to resample to. ``MultimodalProcessor`` fills it from the modality
            processor (see ``processor_options``); ``None`` keeps each file's own rate.
        mono: average the channels (otherwise the waveform is ``(channels, samples)``).
        max_seconds: longer audio is refused (from the file's header, before decoding).

    An array value without a rate (``{"array": a, "sampling_rate": sr}`` or an entry-level
    ``sampling_rate``) is taken to be at ``sampling_rate`` already.
    """

    #: options MultimodalProcessor takes from the modality processor when not given explicitly
    processor_options: ClassVar[tuple[str, ...]] = ("sampling_rate",)

    def __init__(
        self,
        sampling_rate: int | None = None,
        mono: bool = True,
        max_seconds: float = MAX_SECONDS,
        **options: Any,
    ):
        super().__init__(sampling_rate=sampling_rate, mono=mono, max_seconds=max_seconds, **options)
        self.sampling_rate = sampling_rate
        self.mono = mono
        self.max_seconds = max_seconds

    def load(self, sample: dict[str, Any]) -> np.ndarray:
        source = classify(sample)
        if source.kind in ("bytes", "path"):
            errors = (soundfile.LibsndfileError, RuntimeError, TypeError)
            wave, rate = source.decode("audio", _reader(self.max_seconds), errors)
        elif source.kind == "array":
            wave = np.asarray(source.payload, dtype=np.float32)
            if wave.ndim == 1:
                wave = wave[:, None]
            elif wave.ndim != 2:
                shape = f"(samples,) or (samples, channels), got {wave.shape}"
                raise DataError(f"an audio array must be {shape}")
            rate = source.sampling_rate or self.sampling_rate
            _check_size(wave.shape[0], rate, wave.shape[1], self.max_seconds)
        else:
            raise DataError(f"cannot load audio from a {type(source.payload).__name__}")
        if wave.shape[0] == 0:
            raise DataError("the audio is empty (0 samples)")
        if wave.shape[1] == 0:
            raise DataError("the audio has no channels")
        if self.sampling_rate and rate and rate != self.sampling_rate:
            wave = soxr.resample(wave, rate, self.sampling_rate, quality="HQ")
        wave = wave.mean(axis=1) if self.mono else wave.T
        return np.ascontiguousarray(wave, dtype=np.float32)

    def measure(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        """``frames``, ``sampling_rate``, ``channels`` and ``seconds`` as stored (before any
        resampling), from the file header, and ``samples``, the length ``load`` returns (after
        resampling); nothing is decoded."""
        source = classify(sample)
        if source.kind in ("bytes", "path"):
            errors = (soundfile.LibsndfileError, RuntimeError, TypeError)
            info = source.decode("audio", soundfile.info, errors)
            frames, rate, channels = info.frames, info.samplerate, info.channels
            _check_size(frames, rate, channels, self.max_seconds)
        elif source.kind == "array":
            shape = np.shape(source.payload)
            frames, channels = shape[0], shape[1] if len(shape) > 1 else 1
            rate = source.sampling_rate or self.sampling_rate
        else:
            return None
        seconds = frames / rate if rate else None
        samples = int(frames)
        if self.sampling_rate and rate and rate != self.sampling_rate:
            samples = resampled_length(samples, rate, self.sampling_rate)
        return {
            "frames": int(frames),
            "samples": samples,
            "sampling_rate": rate,
            "channels": channels,
            "seconds": seconds,
        }


def resampled_length(frames: int, rate: int, target: int) -> int:
    """The samples soxr's ``resample`` gives for ``frames`` at ``rate`` resampled to ``target``:
    ``frames * target / rate`` rounded half up (exact integer arithmetic)."""
    return (2 * frames * target + rate) // (2 * rate)

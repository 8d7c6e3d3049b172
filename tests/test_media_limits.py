"""Media decoders refuse what would take unbounded memory, from the header, before decoding: an
image of more than ``max_pixels`` pixels, audio longer than ``max_seconds`` or with more than 64
channels (issue 16). Each is a ``DataError`` with the reason ``media too large``."""

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile
from PIL import Image

from mmgen.errors import DataError, reason_of
from mmgen.loaders import RawAudioLoader, RawImageLoader
from mmgen.loaders.image import MAX_PIXELS


def png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its pixel data is one tiny row)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def wav(frames: int, rate: int, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((frames, channels), np.float32), rate, format="WAV")
    return buffer.getvalue()


def refused(call, match: str) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        call()
    assert reason_of(info.value) == "media too large"
    return info.value


@pytest.mark.parametrize("size", [(100_000, 100_000), (8193, 8192), (2**31 - 1, 2)])
def test_an_image_header_claiming_too_many_pixels_is_refused(tmp_path, size):
    loader = RawImageLoader()
    data = png(*size)
    expected = f"{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels, more than"
    if size[0] * size[1] > 2 * Image.MAX_IMAGE_PIXELS:  # PIL's own check refuses it first
        expected = rf"larger than any loader takes: Image size \({size[0] * size[1]} pixels\)"
    refused(lambda: loader.load({"value": data}), expected)
    refused(lambda: loader.measure({"value": data}), expected)
    (tmp_path / "big.png").write_bytes(data)
    refused(lambda: loader.load({"value": str(tmp_path / "big.png")}), expected)


def test_the_pixel_limit_is_an_option_and_covers_arrays():
    small = RawImageLoader(max_pixels=100)
    refused(lambda: small.load({"value": np.zeros((11, 10, 3), np.uint8)}), "110 pixels")
    assert small.load({"value": np.zeros((10, 10, 3), np.uint8)}).size == (10, 10)
    assert RawImageLoader().max_pixels == MAX_PIXELS == 8192 * 8192


def test_long_audio_is_refused_from_its_header():
    loader = RawAudioLoader(sampling_rate=16_000)
    data = wav(4000, 1)  # a tiny file of 4000 s at 1 Hz
    refused(lambda: loader.load({"value": data}), r"lasts 4,000\.0 s .* more than")
    refused(lambda: loader.measure({"value": data}), "max_seconds=3600")
    short = RawAudioLoader(sampling_rate=16_000, max_seconds=0.5)
    refused(lambda: short.load({"value": wav(16_000, 16_000)}), "lasts 1.0 s")
    assert RawAudioLoader(sampling_rate=16_000).load({"value": wav(16_000, 16_000)}).shape == (
        16_000,
    )


def test_audio_with_too_many_channels_or_too_long_an_array_is_refused():
    loader = RawAudioLoader(max_seconds=1)
    refused(lambda: loader.load({"value": wav(10, 8000, channels=65)}), "65 channels")
    array = {"value": {"array": np.zeros(16_001, np.float32), "sampling_rate": 16_000}}
    refused(lambda: loader.load(array), "lasts 1.0 s")


def test_folders_fifos_and_devices_are_never_opened_as_media(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path, tmp_path / "fifo", "/dev/zero"):
        for loader in (RawImageLoader(), RawAudioLoader()):
            with pytest.raises(DataError, match="not a regular file") as info:
                loader.load({"value": str(path)})
            assert reason_of(info.value) == "unreadable media"


def test_audio_without_channels_is_refused():
    with pytest.raises(DataError, match="the audio has no channels"):
        RawAudioLoader().load({"value": np.zeros((10, 0), np.float32)})

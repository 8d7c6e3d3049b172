"""raw-image and raw-audio: every value shape, resampling, and clear errors on bad media."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from helpers.data_samples import png_bytes, sine, wav_bytes
from PIL import Image

from mmgen import AutoModalityLoader, BaseModalityLoader
from mmgen.errors import DataError
from mmgen.loaders import RawAudioLoader, RawImageLoader


def entry(value, **extra):
    return {"type": "x", "value": value, **extra}


def test_registered_names():
    assert isinstance(AutoModalityLoader.from_name("raw-image"), RawImageLoader)
    assert isinstance(
        AutoModalityLoader.from_name("raw-audio", sampling_rate=16000), RawAudioLoader
    )


def test_user_loader_takes_over_a_builtin_name(monkeypatch):
    # the MultiMeditron walkthrough registers its own "raw-image": that must just work
    monkeypatch.setattr(AutoModalityLoader, "_registry", dict(AutoModalityLoader._registry))

    @AutoModalityLoader.register("raw-image")
    class WalkthroughImageLoader(BaseModalityLoader):
        def load(self, sample):
            return "mine"

    assert AutoModalityLoader.from_name("raw-image")({}) == "mine"
    AutoModalityLoader.register("raw-image")(RawImageLoader)  # mmgen's own, imported again
    assert isinstance(AutoModalityLoader.from_name("raw-image"), WalkthroughImageLoader)
    with pytest.raises(ValueError, match=r"already registered by .*WalkthroughImageLoader"):
        AutoModalityLoader.register("raw-image")(type("Other", (WalkthroughImageLoader,), {}))


def test_image_from_bytes_path_array_dict_and_pil(tmp_path):
    data = png_bytes(12, 7, seed=3)
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    (tmp_path / "a.png").write_bytes(data)
    loader = RawImageLoader()
    values = [
        data,
        str(tmp_path / "a.png"),
        tmp_path / "a.png",
        {"bytes": data, "path": "ignored.png"},  # datasets' Image feature: the bytes win
        {"bytes": None, "path": str(tmp_path / "a.png")},
        pixels,
        pixels.tolist(),
        Image.fromarray(pixels),
    ]
    for value in values:
        image = loader(entry(value))
        assert image.mode == "RGB" and image.size == (12, 7)
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_image_modes_and_float_arrays():
    gray = RawImageLoader()(entry(np.full((4, 5), 0.5, dtype=np.float32)))
    assert gray.mode == "RGB" and np.asarray(gray)[0, 0].tolist() == [128, 128, 128]
    kept = RawImageLoader(mode=None)(entry(np.zeros((4, 5), dtype=np.uint8)))
    assert kept.mode == "L"


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"\x89PNG\r\n\x1a\n garbage", "cannot decode image bytes"),
        (png_bytes(16, 16)[:60], "cannot decode image bytes"),  # truncated file
        ("/nonexistent/a.png", "file not found: /nonexistent/a.png"),
        (np.zeros((2, 3, 7)), r"\(H, W\) or \(H, W, 1\|3\|4\)"),
        ({"path": None}, "none of 'bytes', 'array', 'path'"),
        (3.5, "cannot load an image from a float"),
    ],
    ids=["garbage", "truncated", "missing", "shape", "empty-dict", "float"],
)
def test_bad_images_raise_data_errors(value, match):
    with pytest.raises(DataError, match=match):
        RawImageLoader()(entry(value))


def test_audio_resampled_to_the_target_rate(tmp_path):
    (tmp_path / "a.wav").write_bytes(wav_bytes(0.5, 16000, freq=440))
    expected = sine(0.5, 8000, freq=440)
    loader = RawAudioLoader(sampling_rate=8000)
    for value in (wav_bytes(0.5, 16000, freq=440), str(tmp_path / "a.wav")):
        wave = loader(entry(value))
        assert wave.dtype == np.float32 and wave.shape == expected.shape
        # soxr's filter settles within a few ms at the edges; compare the middle
        np.testing.assert_allclose(wave[200:-200], expected[200:-200], atol=2e-3)


def test_audio_stereo_to_mono_and_native_rate():
    stereo = wav_bytes(0.25, 8000, channels=2)
    assert RawAudioLoader()(entry(stereo)).shape == (2000,)
    both = RawAudioLoader(mono=False)(entry(stereo))
    assert both.shape == (2, 2000)
    np.testing.assert_allclose(both[0], sine(0.25, 8000), atol=1e-4)


def test_audio_arrays_with_and_without_rate():
    loader = RawAudioLoader(sampling_rate=8000)
    wave = sine(0.5, 16000)
    assert loader(entry({"array": wave, "sampling_rate": 16000})).shape == (4000,)
    assert loader(entry(wave.tolist(), sampling_rate=16000)).shape == (4000,)
    assert loader(entry(wave)).shape == (8000,)  # no rate given: taken to be the target's


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "cannot decode audio bytes"),
        ("/nonexistent/a.wav", "file not found"),
        (np.zeros((2, 2, 2)), r"\(samples,\) or \(samples, channels\)"),
        (np.zeros(0), "empty"),
    ],
    ids=["garbage", "missing", "shape", "empty"],
)
def test_bad_audio_raises_data_errors(value, match):
    with pytest.raises(DataError, match=match):
        RawAudioLoader(sampling_rate=8000)(entry(value))


def test_audio_formats_libsndfile_reads():
    buffer = io.BytesIO()
    soundfile.write(buffer, sine(0.25, 8000), 8000, format="FLAC")
    wave = RawAudioLoader()(entry(buffer.getvalue()))
    np.testing.assert_allclose(wave, sine(0.25, 8000), atol=1e-4)

"""Built-in signal preprocessing and the value reader used by generated loaders."""

import io

import numpy as np
import pytest
import torch

from mmgen.errors import DataError
from mmgen.loaders.values import read_value
from mmgen.nn.preprocess import SignalPreprocessor


def test_zscore_crop_and_pad():
    rng = np.random.default_rng(0)
    long = rng.normal(3.0, 2.0, size=1000)
    out = SignalPreprocessor(length=500)(long)
    assert out.shape == (1, 500) and out.dtype == torch.float32
    normalised = (long - long.mean()) / long.std(ddof=1)
    np.testing.assert_allclose(out[0].numpy(), normalised[250:750], rtol=1e-4, atol=1e-5)
    short = SignalPreprocessor(length=10, normalize="none")(np.arange(4.0))
    assert short.tolist() == [[0, 1, 2, 3, 0, 0, 0, 0, 0, 0]]


def test_minmax_and_channels():
    x = np.stack([np.linspace(-5, 5, 11), np.linspace(0, 1, 11)])
    out = SignalPreprocessor(normalize="minmax", channels=2)(x)
    assert out.min() == pytest.approx(-1) and out.max() == pytest.approx(1)
    with pytest.raises(ValueError, match=r"\(2, L\)"):
        SignalPreprocessor(channels=2)(np.zeros(5))


def test_resample_keeps_duration_and_shape_of_a_sine():
    rate, target = 500, 250
    t = np.arange(rate * 2) / rate
    out = SignalPreprocessor(sampling_rate=target, normalize="none")(
        np.sin(2 * np.pi * 3 * t), sampling_rate=rate
    )
    assert out.shape == (1, 2 * target)
    expected = np.sin(2 * np.pi * 3 * np.arange(2 * target) / target)
    assert np.abs(out[0].numpy() - expected).max() < 0.05


def test_read_value_kinds(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert read_value({"value": b"abc"}) == ("bytes", b"abc")
    assert read_value({"value": str(path)}) == ("path", path)
    assert read_value({"value": {"bytes": None, "path": str(path)}}) == ("path", path)
    kind, payload = read_value({"value": {"array": [1, 2], "sampling_rate": 8}})
    assert kind == "array" and payload.tolist() == [1, 2]
    assert read_value({"value": torch.ones(2)})[1].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "entry, accepts, message",
    [
        ({"value": None}, ("bytes",), "no 'value'"),
        ({}, ("bytes",), "no 'value'"),
        ({"value": "/no/such/file.wav"}, ("path",), "file not found"),
        ({"value": b"x"}, ("path", "array"), "not bytes"),
        ({"value": object()}, ("array",), "cannot load a object"),
    ],
)
def test_read_value_errors(entry, accepts, message):
    with pytest.raises(DataError, match=message):
        read_value(entry, accepts)


def test_npy_bytes_roundtrip_through_numpy():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6).reshape(2, 3))
    _, payload = read_value({"value": buffer.getvalue()})
    assert np.load(io.BytesIO(payload)).tolist() == [[0, 1, 2], [3, 4, 5]]

"""The built-in audio modality pays only for real audio: a clip keeps the Whisper positions that
cover it (checked against the encoder's own output for those positions), a clip longer than a
window is encoded as consecutive windows, and the data index counts the same number from the
file header without decoding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers.data_samples import CHATML, make_tokenizer, wav_bytes
from transformers import WhisperFeatureExtractor, WhisperModel

from mmgen import MODALITY_VALUE_KEY, NUM_EMBEDDINGS_KEY
from mmgen.data import MultimodalDataset, MultimodalProcessor
from mmgen.loaders.audio import RawAudioLoader, resampled_length
from mmgen.modalities.audio import AudioConfig, AudioModality, AudioProcessor
from mmgen.nn.windows import split_frame_mask, window_lengths
from mmgen.spec.catalog import resolve
from mmgen.testing import save_tiny_model

RATE = 16000


def tiny_config(folder, max_windows: int = 4, **encoder) -> AudioConfig:
    """The spec's tiny Whisper (1-second window: 100 frames -> 50 positions), or another
    geometry given by ``encoder`` (with the feature extractor's defaults: 30 s, 80 mel bins)."""
    spec, _ = resolve("audio", None)
    if encoder:
        tiny = {**spec.test.encoder, "num_mel_bins": 80, **encoder}
        extractor = WhisperFeatureExtractor()
    else:
        tiny, extractor = spec.test.encoder, WhisperFeatureExtractor(**spec.test.processor)
    extractor.save_pretrained(folder / "processor")
    return AudioConfig(
        hidden_size=32,
        max_windows=max_windows,
        encoder_name_or_path=save_tiny_model(WhisperModel, folder / "encoder", **tiny),
        processor_name_or_path=str(folder / "processor"),
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> AudioConfig:
    return tiny_config(tmp_path_factory.mktemp("audio"))


def waveform(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(round(seconds * RATE))).astype(np.float32)


def reference_rows(model: AudioModality, wave: np.ndarray) -> torch.Tensor:
    """What the clip should become, by hand: Whisper's features of each window (padded as
    Whisper needs), the encoder's positions over the window's real frames, downsampled,
    projected, concatenated."""
    extractor = WhisperFeatureExtractor.from_pretrained(model.config.processor_name_or_path)
    window = extractor.n_samples
    rows = []
    for start in range(0, min(len(wave), window * model.config.max_windows), window):
        piece = wave[start : start + window]
        features = extractor(piece, sampling_rate=RATE, return_tensors="pt")["input_features"]
        hidden = model.encoder(input_features=features).last_hidden_state[0]
        positions = math.ceil(math.ceil(len(piece) / extractor.hop_length) / 2)
        rows.append(model.projector(model.downsample(hidden[:positions])))
    return torch.cat(rows)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    # 25 embeddings per second of tiny-Whisper window (50 positions, 2x downsampling)
    [(0.3, 8), (1.0, 25), (1.7, 25 + 18), (2.5, 25 + 25 + 13), (4.55, 4 * 25)],
)
def test_a_clip_keeps_the_positions_that_cover_it(config, seconds, expected) -> None:
    wave = waveform(seconds)
    item = AudioProcessor(config).process({"type": "audio", MODALITY_VALUE_KEY: wave})
    assert item[NUM_EMBEDDINGS_KEY] == expected  # 4.55 s: cut after max_windows=4 windows
    model = AudioModality(config).eval()
    with torch.no_grad():
        (rows,) = model([item[MODALITY_VALUE_KEY]])
        torch.testing.assert_close(rows, reference_rows(model, wave), atol=1e-5, rtol=1e-5)


def test_clips_of_different_lengths_batch_as_they_encode_alone(config) -> None:
    processor, model = AudioProcessor(config), AudioModality(config).eval()
    values = [
        processor.process({MODALITY_VALUE_KEY: waveform(s, i)})[MODALITY_VALUE_KEY]
        for i, s in enumerate((0.25, 2.2, 1.0, 0.6))
    ]
    with torch.no_grad():
        together = model(values)
        for value, rows in zip(values, together, strict=True):
            torch.testing.assert_close(rows, model([value])[0], atol=1e-5, rtol=1e-5)
    assert [len(r) for r in together] == [7, 25 + 25 + 5, 25, 15]


def test_the_value_carries_each_window_and_its_real_frames(config) -> None:
    value = AudioProcessor(config).process({MODALITY_VALUE_KEY: waveform(2.3)})[MODALITY_VALUE_KEY]
    features, frames = split_frame_mask(value)
    assert features.shape == (3, 8, 100)  # 3 windows of 8 mel bins x 100 frames
    assert frames.tolist() == [100, 100, 30]


def test_whisper_base_geometry_two_and_forty_five_seconds(tmp_path) -> None:
    """whisper-base: 30 s windows, 1500 positions (50 per second), 2x downsampling."""
    config = tiny_config(tmp_path, max_source_positions=1500, max_target_positions=16)
    processor = AudioProcessor(config)
    assert processor.window == 30 * RATE
    assert processor.num_embeddings(2 * RATE) == 50
    assert processor.num_embeddings(45 * RATE) == 1125
    assert processor.num_embeddings(30 * RATE) == 750  # a whole window: what every clip paid
    model = AudioModality(config).eval()
    item = processor.process({MODALITY_VALUE_KEY: waveform(2.0)})
    with torch.no_grad():
        (rows,) = model([item[MODALITY_VALUE_KEY]])
    assert item[NUM_EMBEDDINGS_KEY] == rows.shape[0] == 50


def test_max_windows_bounds_a_long_clip(tmp_path) -> None:
    processor = AudioProcessor(tiny_config(tmp_path, max_windows=2))
    assert processor.num_embeddings(10 * RATE) == 50
    assert window_lengths(10 * RATE, RATE, 2) == [RATE, RATE]
    with pytest.raises(ValueError, match="no window"):
        window_lengths(0, RATE, 2)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_the_header_gives_the_loaded_length(tmp_path, rate) -> None:
    loader = RawAudioLoader(sampling_rate=RATE)
    for seconds in (0.05, 0.731, 2.0, 3.337):
        path = tmp_path / f"{rate}-{seconds}.wav"
        path.write_bytes(wav_bytes(seconds, rate))
        measured = loader.measure({"value": str(path)})
        assert measured["samples"] == len(loader.load({"value": str(path)}))
    assert resampled_length(7, 22050, RATE) == 5


def test_the_data_index_counts_without_decoding(tmp_path, config, monkeypatch) -> None:
    rows = []
    for i, (seconds, rate) in enumerate([(0.3, 16000), (1.37, 44100), (2.6, 8000), (5.2, 22050)]):
        (tmp_path / f"{i}.wav").write_bytes(wav_bytes(seconds, rate))
        rows.append({
            "id": f"r{i}",
            "conversations": [
                {"role": "user", "content": "Transcribe <audio>"},
                {"role": "assistant", "content": "a b c"},
            ],
            "modalities": [{"type": "audio", "value": f"{i}.wav"}],
        })  # fmt: skip
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    made = MultimodalProcessor(make_tokenizer(CHATML), {"audio": AudioProcessor(config)})
    loader = made.loaders["audio"]
    monkeypatch.setattr(loader, "load", lambda s: pytest.fail(f"decoded {s} to measure it"))
    dataset = MultimodalDataset(path, made, index=False)
    monkeypatch.undo()
    spans = [dataset.index.spans(i) for i in range(len(rows))]
    counts = [end - start for ((start, end),) in spans]
    assert counts == [8, 25 + 10, 25 + 25 + 15, 4 * 25]  # 5.2 s: 4 windows at most
    for i in range(len(rows)):
        sample = dataset[i]
        assert sample.length == dataset.lengths[i]
        assert [item.num_embeddings for item in sample.items] == [counts[i]]

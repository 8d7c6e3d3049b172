"""``mmgen bench tokens``: what real-length audio embeddings save on a speech-like mix: LLM
positions per clip and the useful tokens/s of a packed training step, every clip padded to
Whisper's 30-second window (750 embeddings, as the built-in audio spec did) vs the embeddings
that cover the clip (25 per second, ``specs/audio.yaml``'s ``length`` block).

    mmgen bench tokens            # 96 clips of 1-30 s, lognormal around 5 s, 4096-token packs
    mmgen bench tokens --small    # a few seconds (the CLI test runs this)

Both rows run the same model (a random-init Llama and the built-in audio modality over a
random-init Whisper encoder with whisper-base's geometry: 80 mel bins, 3,000 frames -> 1,500
positions, 2x concat downsampling; frozen, as the spec's ``trainable`` says) on the same clips
through the real pipeline (``MultimodalDataset`` -> ``packed_dataloader`` -> forward +
backward). The fixed-window row is the same processor with every window's frame mask set to
"all real", so the modality keeps all 1,500 positions: the behaviour before the ``length``
block. Useful tokens are the text tokens plus the embeddings that cover real audio (25 per
second); the rest of a fixed window encodes Whisper's zero padding. The rows take turns in
rounds and each figure is a median over rounds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.bench.table import emit
from mmgen.bench.words import vocab_size, word_tokenizer

COLUMNS = (
    "audio embeddings",
    "positions/clip",
    "useful %",
    "packs",
    "clips/step",
    "step ms",
    "clips/s",
    "useful tok/s",
    "x fixed",
)
FIXED, REAL = "fixed 30 s window", "real length"
RATE = 16000
EMBEDDINGS_PER_SECOND = 25  # whisper-base: 50 positions per second, 2x downsampling
WORDS = 1000  # the transcripts' vocabulary


@dataclass(frozen=True)
class Sizes:
    clips: int = 96
    capacity: int = 4096
    median_seconds: float = 5.0  # lognormal clip length, clipped to [min, max] seconds
    sigma: float = 0.8
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    words_per_second: float = 2.5  # the transcript's length
    hidden: int = 256
    layers: int = 4
    encoder_width: int = 64
    encoder_layers: int = 2
    rounds: int = 3
    seed: int = 0


SMALL = Sizes(clips=16, capacity=2048, hidden=64, layers=2, encoder_layers=1, rounds=1)


def clip_seconds(sizes: Sizes) -> np.ndarray:
    rng = np.random.default_rng(sizes.seed)
    seconds = rng.lognormal(np.log(sizes.median_seconds), sizes.sigma, sizes.clips)
    return np.clip(seconds, sizes.min_seconds, sizes.max_seconds)


def make_rows(sizes: Sizes) -> list[dict[str, Any]]:
    """A transcription mix: one clip per row (noise at 16 kHz), a transcript of words."""
    rng = np.random.default_rng(sizes.seed + 1)
    rows = []
    for index, seconds in enumerate(clip_seconds(sizes)):
        wave = (0.1 * rng.standard_normal(round(seconds * RATE))).astype(np.float32)
        words = max(1, round(seconds * sizes.words_per_second))
        answer = " ".join(f"w{k}" for k in rng.integers(0, WORDS, words))
        rows.append(
            {
                "id": f"c{index}",
                "conversations": [
                    {"role": "user", "content": "<audio> w1 w2 w3"},
                    {"role": "assistant", "content": answer},
                ],
                "modalities": [{"type": "audio", "value": wave, "sampling_rate": RATE}],
            }
        )
    return rows


def _fixed_window(processor_class: type) -> type:
    """The audio processor as it was before the ``length`` block: every window counts as all
    real, so every clip costs a whole window's embeddings."""

    class FixedWindow(processor_class):
        def process(self, modality: dict[str, Any]) -> dict[str, Any]:
            from mmgen.constants import MODALITY_VALUE_KEY, NUM_EMBEDDINGS_KEY

            out = super().process(modality)
            value = out[MODALITY_VALUE_KEY].clone()
            value[:, -1] = 1.0  # the frame-mask row: every frame real
            windows = value.shape[0]
            count = windows * self.window_embeddings(self.window)
            return {**out, MODALITY_VALUE_KEY: value, NUM_EMBEDDINGS_KEY: count}

        def count(self, modality, measure):
            return None  # processed: the fixed count is what process gives

    return FixedWindow


def make_model(sizes: Sizes, folder: Path):
    from transformers import LlamaConfig, LlamaForCausalLM, WhisperFeatureExtractor, WhisperModel

    from mmgen.modalities.audio import AudioConfig, AudioModality
    from mmgen.model import MultimodalModel
    from mmgen.testing import save_tiny_model

    torch.manual_seed(sizes.seed)
    width = sizes.encoder_width
    save_tiny_model(
        WhisperModel,
        folder,
        seed=sizes.seed,
        d_model=width,
        encoder_layers=sizes.encoder_layers,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=2 * width,
        decoder_ffn_dim=2 * width,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=16,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperFeatureExtractor().save_pretrained(folder)  # whisper-base's: 30 s, 80 mel, hop 160
    llm = LlamaConfig(
        vocab_size=vocab_size(WORDS),
        hidden_size=sizes.hidden,
        intermediate_size=4 * sizes.hidden,
        num_hidden_layers=sizes.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=sizes.capacity,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    audio = AudioConfig(
        hidden_size=sizes.hidden,
        max_batch_size=8,
        encoder_name_or_path=str(folder),
        processor_name_or_path=str(folder),
    )
    model = MultimodalModel(
        language_model=LlamaForCausalLM(llm), modalities={"audio": AudioModality(audio)}
    )
    return model.train(), audio


@dataclass
class Row:
    name: str
    packs: list[dict[str, Any]]
    positions: int  # audio embeddings over all clips
    useful: int  # text tokens + embeddings covering real audio, over all clips
    total: int  # every LLM position over all clips
    times: list[float] = field(default_factory=list)  # seconds per step, every round
    rates: list[float] = field(default_factory=list)  # clips / s, per round


def _build(sizes: Sizes) -> tuple[Any, list[Row]]:
    from mmgen.data import MultimodalDataset, MultimodalProcessor, packed_dataloader
    from mmgen.modalities.audio import AudioProcessor

    rows_data = make_rows(sizes)
    seconds = clip_seconds(sizes)
    real_audio = int(sum(np.ceil(s * EMBEDDINGS_PER_SECOND) for s in seconds))
    tokenizer = word_tokenizer(WORDS, "<audio>")
    with tempfile.TemporaryDirectory(prefix="mmgen-bench-") as folder:
        model, audio = make_model(sizes, Path(folder))
        rows = []
        kinds = ((FIXED, _fixed_window(AudioProcessor)), (REAL, AudioProcessor))
        for name, processor_class in kinds:
            processor = MultimodalProcessor(
                tokenizer,
                {"audio": processor_class(audio)},
                placeholder_tokens=model.placeholder_tokens,
                placeholder_ids=model.placeholder_ids,
            )
            dataset = MultimodalDataset(rows_data, processor, cache=True)
            index = dataset.index  # every item's span, as the scan measured it
            positions = int((index.ends - index.starts).sum())
            text = int(dataset.lengths.sum()) - positions
            packs = list(packed_dataloader(dataset, sizes.capacity, seed=sizes.seed))
            useful = text + min(real_audio, positions)
            rows.append(Row(name, packs, positions, useful, text + positions))
    return model, rows


def _step(model, batch: dict[str, Any]) -> None:
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()


def run(sizes: Sizes, *, threads: int = 1, as_json: bool = False) -> str:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, rows = _build(sizes)
        for row in rows:  # warm-up: allocator, kernels, lazy init
            _step(model, row.packs[0])
        for index in range(sizes.rounds):  # rotate who goes first
            for k in range(len(rows)):
                row = rows[(index + k) % len(rows)]
                start_round = time.perf_counter()
                for batch in row.packs:
                    start = time.perf_counter()
                    _step(model, batch)
                    row.times.append(time.perf_counter() - start)
                row.rates.append(sizes.clips / (time.perf_counter() - start_round))
    finally:
        torch.set_num_threads(previous)
    return _report(sizes, rows, threads, as_json)


def _report(sizes: Sizes, rows: list[Row], threads: int, as_json: bool) -> str:
    fixed = rows[0]
    table = []
    for row in rows:
        clips_per_second = statistics.median(row.rates)
        useful_rate = [rate * row.useful / sizes.clips for rate in row.rates]
        table.append(
            [
                row.name,
                row.positions / sizes.clips,
                100.0 * row.useful / row.total,
                len(row.packs),
                sizes.clips / len(row.packs),
                1e3 * statistics.median(row.times),
                clips_per_second,
                statistics.median(useful_rate),
                statistics.median(p / q for p, q in zip(row.rates, fixed.rates, strict=True)),
            ]
        )
    seconds = clip_seconds(sizes)
    meta = {
        "clips": (
            f"{sizes.clips}, {seconds.min():.1f}-{seconds.max():.1f} s (median "
            f"{np.median(seconds):.1f} s, mean {seconds.mean():.1f} s; lognormal around "
            f"{sizes.median_seconds:g} s, sigma {sizes.sigma:g}, clipped to "
            f"{sizes.min_seconds:g}-{sizes.max_seconds:g} s), transcripts of "
            f"{sizes.words_per_second:g} words/s"
        ),
        "model": (
            f"Llama hidden {sizes.hidden}, {sizes.layers} layers; built-in audio modality over a "
            f"random-init Whisper encoder (width {sizes.encoder_width}, encoder layers: "
            f"{sizes.encoder_layers}, frozen) with whisper-base's geometry: 30 s windows, 1500 "
            f"positions, 2x concat -> 750 embeddings per window; fp32, {threads} thread"
            f"{'s' if threads > 1 else ''}"
        ),
        "packed": f"capacity {sizes.capacity} tokens per step",
        "useful": (
            "text tokens + the audio embeddings that cover real audio (25 per second); "
            "x fixed: clips/s against the fixed window, median over rounds"
        ),
    }
    if as_json:
        meta["sizes"] = asdict(sizes)
    title = "mmgen bench tokens: audio embeddings for a whole window vs the real clip length"
    return emit(title, COLUMNS, table, as_json=as_json, **meta)

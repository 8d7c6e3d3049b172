"""The synthetic demo datasets: reproducible, in the dataset format, with a tokenizer whose
chat template and word-level vocabulary make answers exact token sequences."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mmgen.demo_data import write_demo_data
from mmgen.demo_data.audio import NOTES, SAMPLING_RATE, tones
from mmgen.errors import MmgenError


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    sizes = {"train": 5, "eval": 2, "test": 2}
    write_demo_data("audio", tmp_path / "a", sizes, seed=1)
    write_demo_data("audio", tmp_path / "b", sizes, seed=1)
    write_demo_data("audio", tmp_path / "c", sizes, seed=2)
    for name in ("train.jsonl", "media/train-00003.wav", "media/test-00001.wav"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a/train.jsonl").read_bytes() != (tmp_path / "c/train.jsonl").read_bytes()


def test_audio_rows_point_at_clips_of_their_notes(tmp_path: Path) -> None:
    write_demo_data("audio", tmp_path, {"train": 4, "eval": 1, "test": 1}, seed=0)
    for row in rows(tmp_path / "train.jsonl"):
        user, assistant = row["conversations"]
        assert user == {"role": "user", "content": "What notes are played in <audio>?"}
        notes = assistant["content"].split()
        assert len(notes) == 3 and set(notes) <= set(NOTES)
        wave, rate = soundfile.read(tmp_path / row["modalities"][0]["value"]["path"])
        assert rate == SAMPLING_RATE and wave.shape == (3 * SAMPLING_RATE // 4,)
        # the loudest frequency of each quarter second is its note
        for part, note in zip(np.split(wave, 3), notes, strict=True):
            spectrum = np.abs(np.fft.rfft(part))
            peak = np.argmax(spectrum) * SAMPLING_RATE / len(part)
            assert abs(peak - NOTES[note]) <= 4.0, (note, peak)


def test_tones_fade_in_and_out() -> None:
    wave = tones(["A4"], np.random.default_rng(0))
    assert abs(wave[0]) < 0.05 and abs(wave[-1]) < 0.05
    assert np.abs(wave).max() > 0.45


def test_tokenizer_renders_the_chat_and_answers_are_word_tokens(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    written = write_demo_data("audio", tmp_path, {"train": 6, "eval": 1, "test": 1}, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(written["tokenizer"])
    row = rows(written["train"])[0]
    answer = row["conversations"][1]["content"]
    text = tokenizer.apply_chat_template(row["conversations"], tokenize=False)
    assert text == (
        f"<s><|user|> What notes are played in <audio>? <|end|> <|assistant|> {answer} <|end|> "
    )
    ids = tokenizer(answer, add_special_tokens=False).input_ids
    assert len(ids) == 3 and tokenizer.unk_token_id not in ids
    assert tokenizer.decode([*ids, tokenizer.eos_token_id], skip_special_tokens=True) == answer
    assert "<audio>" not in tokenizer.get_vocab()  # the processor cuts placeholders out


def test_image_task_writes_pngs_with_colour_and_shape_answers(tmp_path: Path) -> None:
    from PIL import Image

    from mmgen.demo_data.image import COLOURS, IMAGE_SIZE, SHAPES

    write_demo_data("image", tmp_path, {"train": 8, "eval": 1, "test": 1}, seed=0)
    for row in rows(tmp_path / "train.jsonl"):
        colour, shape = row["conversations"][1]["content"].split()
        assert colour in COLOURS and shape in SHAPES
        media = tmp_path / row["modalities"][0]["value"]["path"]
        image = Image.open(io.BytesIO(media.read_bytes()))
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
        assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
        # the shape's colour covers a visible part of the image
        assert (np.abs(pixels - np.array(COLOURS[colour])).sum(axis=1) < 10).sum() > 20


def test_unknown_task_and_empty_split_are_errors(tmp_path: Path) -> None:
    with pytest.raises(MmgenError, match="unknown demo task 'video'; choose one of audio, image"):
        write_demo_data("video", tmp_path, {"train": 1})
    with pytest.raises(MmgenError, match="--eval must be at least 1"):
        write_demo_data("audio", tmp_path, {"train": 1, "eval": 0})

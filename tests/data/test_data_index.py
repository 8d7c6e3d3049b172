"""The length index: measuring without processing gives exactly what processing gives; the index
is kept, reused, rebuilt when anything it depends on changes or when it does not read back whole;
one process builds while others wait; workers measure the same; packing plans are identical."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers.data_samples import AudioProcessor, ImageProcessor, png_bytes, wav_bytes

from mmgen import BaseModalityConfig, MultimodalProcessor
from mmgen.data import MultimodalDataset
from mmgen.data import index as index_module
from mmgen.data.index import load_or_build, read_index
from mmgen.data.sampler import TokenBudgetSampler
from mmgen.errors import DataError


class CountingImage(ImageProcessor):
    """Counts from the header what processing would count: one per 8x8 patch."""

    def count(self, modality, measure):
        size = measure()
        return (size["height"] // 8) * (size["width"] // 8)


class CountingAudio(AudioProcessor):
    """Counts from the header: one per 100 ms at the file's rate (the loader keeps the rate)."""

    def count(self, modality, measure):
        info = measure()
        if info["sampling_rate"] != self.config.sampling_rate:
            return None  # resampled when loaded: processing tells
        return math.ceil(info["frames"] / (self.config.sampling_rate // 10))


def processors(counting: bool):
    image_cls, audio_cls = (CountingImage, CountingAudio) if counting else (
        ImageProcessor, AudioProcessor)  # fmt: skip
    from helpers.data_samples import AudioConfig

    return {
        "image": image_cls(BaseModalityConfig(hidden_size=8, modality_type="image")),
        "audio": audio_cls(AudioConfig(hidden_size=8, modality_type="audio")),
    }


def write_rows(folder, n: int = 40, bad: bool = False):
    media = folder / "media"
    media.mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        image, audio = f"media/{i}.png", f"media/{i}.wav"
        (folder / image).write_bytes(png_bytes(8 + 8 * (i % 4), 16 + 8 * (i % 3), seed=i))
        (folder / audio).write_bytes(wav_bytes(0.1 + 0.07 * (i % 5), (8000, 16000)[i % 2]))
        text = " ".join(["seven"] * (i % 7))
        rows.append({
            "id": f"r{i}",
            "conversations": [
                {"role": "user", "content": f"What is in <image> and <audio>? {text}"},
                {"role": "assistant", "content": "one two" * (1 + i % 3)},
            ],
            "modalities": [{"type": "image", "value": image}, {"type": "audio", "value": audio}],
        })  # fmt: skip
    lines = [json.dumps(row) for row in rows]
    if bad:
        lines.insert(3, "{not json")
        (folder / "media/broken.png").write_bytes(b"not a png")
        rows_bad = dict(rows[0], id="broken")
        rows_bad["modalities"] = [{"type": "image", "value": "media/broken.png"},
                                  rows[0]["modalities"][1]]  # fmt: skip
        lines.insert(10, json.dumps(rows_bad))
        lines.insert(
            20,
            json.dumps(
                dict(
                    rows[1],
                    id="gone",
                    modalities=[
                        {"type": "image", "value": "media/missing.png"},
                        rows[1]["modalities"][1],
                    ],
                )
            ),
        )
    path = folder / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def processor(tokenizer, counting=True, **options):
    return MultimodalProcessor(tokenizer, processors(counting), **options)


@pytest.mark.parametrize("max_length", [None, 40])
def test_measuring_gives_what_processing_gives(tmp_path, chat_tokenizer, max_length) -> None:
    path = write_rows(tmp_path)
    for counting in (True, False):
        made = processor(chat_tokenizer, counting, max_length=max_length)
        dataset = MultimodalDataset(path, made, index=False)
        assert len(dataset) == 40
        whole = MultimodalDataset(path, processor(chat_tokenizer, counting), index=False)
        index = dataset.index
        for i in range(len(dataset)):
            sample = dataset[i]
            assert dataset.lengths[i] == sample.length, (counting, i)
            assert index.spans(i) == tuple(sample.spans()), (counting, i)
            assert dataset.ids[i] == sample.id
            # what `mmgen data check` reports: learnt tokens, item modalities, uncut length
            assert index.targets[i] == int((sample.labels != -100).sum()), (counting, i)
            kinds = index.kinds[index.offsets[i] : index.offsets[i + 1]]
            assert [index.modalities[k] for k in kinds] == [it.modality for it in sample.items]
            assert index.full_lengths[i] == whole.lengths[i]


def test_counted_items_are_not_decoded(tmp_path, chat_tokenizer, monkeypatch) -> None:
    path = write_rows(tmp_path, 10)
    loaded = []
    made = processor(chat_tokenizer)
    for loader in made.loaders.values():
        real = loader.load
        monkeypatch.setattr(loader, "load", lambda s, _real=real: loaded.append(s) or _real(s))
    made.processors["audio"].config.sampling_rate = 16000  # 8 kHz clips: processed instead
    MultimodalDataset(path, made, index=False)
    assert loaded and all(str(s["value"]).endswith(".wav") for s in loaded)  # audio only
    assert len(loaded) == 5  # the 8 kHz half of the clips


def test_the_index_is_kept_and_reused(tmp_path, chat_tokenizer, monkeypatch) -> None:
    path = write_rows(tmp_path, 12)
    first = MultimodalDataset(path, processor(chat_tokenizer))
    made = processor(chat_tokenizer)
    monkeypatch.setattr(made, "measure", lambda *a, **k: pytest.fail("measured again"))
    again = MultimodalDataset(path, made)
    assert torch.equal(again.lengths, first.lengths) and again.ids == first.ids
    assert [again.index.spans(i) for i in range(12)] == [first.index.spans(i) for i in range(12)]
    assert again[5].id == "r5"


@pytest.mark.parametrize("change", ["data", "tokenizer", "max_length", "config", "template"])
def test_any_change_it_depends_on_rebuilds_it(tmp_path, chat_tokenizer, change) -> None:
    path = write_rows(tmp_path, 12)
    MultimodalDataset(path, processor(chat_tokenizer))
    options = {}
    made = processor(chat_tokenizer)
    if change == "data":
        text = path.read_text().replace("seven", "eight")
        time.sleep(0.01)
        path.write_text(text)
    elif change == "tokenizer":
        chat_tokenizer.add_tokens(["sevenfold"])
        made = processor(chat_tokenizer)
    elif change == "max_length":
        options = {"max_length": 30}
        made = processor(chat_tokenizer, **options)
    elif change == "config":
        made.processors["audio"].config.sampling_rate = 16000
    else:
        made = processor(chat_tokenizer, chat_template="plain")
    calls = []
    real = made.measure
    made.measure = lambda *a, **k: calls.append(1) or real(*a, **k)
    MultimodalDataset(path, made)
    assert calls, f"a change of {change} must rebuild the index"


def index_files():
    return list((index_module.cache_dir() / "index").glob("*.safetensors"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_a_damaged_index_is_rebuilt_not_trusted(tmp_path, chat_tokenizer, damage) -> None:
    path = write_rows(tmp_path, 12)
    before = set(index_files())
    good = MultimodalDataset(path, processor(chat_tokenizer))
    (kept,) = set(index_files()) - before
    data = bytearray(kept.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"x" * len(data))
    else:  # a length set to 0 inside the tensors: the header still parses
        data[-8:] = bytes(8)
    kept.write_bytes(bytes(data))
    assert read_index(kept) is None or damage == "flip"
    again = MultimodalDataset(path, processor(chat_tokenizer))
    assert torch.equal(again.lengths, good.lengths)
    assert read_index(kept) is not None  # rewritten whole


def test_one_builds_while_the_others_wait(tmp_path) -> None:
    builds = []
    made = index_module.DataIndex.from_sizes([], [], 0, index_module.SkipLog())

    def build():
        builds.append(threading.get_ident())
        time.sleep(0.3)
        return made

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_build("k", build, folder=tmp_path)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(results) == 3


def test_skips_are_counted_by_reason_and_kept_with_the_index(tmp_path, chat_tokenizer) -> None:
    path = write_rows(tmp_path, 20, bad=True)
    with pytest.raises(DataError, match=r"train.jsonl:4: malformed JSONL line"):
        MultimodalDataset(path, processor(chat_tokenizer))
    made = processor(chat_tokenizer, on_error="skip")
    first = MultimodalDataset(path, made)
    assert len(first) == 20
    assert first.skipped.reasons == {"malformed line": 1, "unreadable media": 1,
                                     "missing file": 1}  # fmt: skip
    again = MultimodalDataset(path, processor(chat_tokenizer, on_error="skip"))
    assert again.report() == first.report() and "23 samples" in again.report()
    # every dropped row keeps its position and problem, in source order
    problems = again.index.problems()
    assert [(row, reason) for row, reason, _ in problems] == [
        (3, "malformed line"), (10, "unreadable media"), (20, "missing file")]  # fmt: skip
    assert problems[2][2].endswith("missing.png") or "missing.png" in problems[2][2]
    # a run that raises on bad rows reads the same index and raises the first problem
    with pytest.raises(DataError, match=r"train.jsonl:4: malformed JSONL line") as raised:
        MultimodalDataset(path, processor(chat_tokenizer))
    assert raised.value.reason == "malformed line"


class FixedImage(ImageProcessor):
    """Four embeddings per image, whatever its size: a count that needs no header."""

    def process(self, modality):
        return {**super().process(modality), "num_embeddings": 4}

    def count(self, modality, measure):
        return 4


def test_without_headers_a_bad_file_is_skipped_when_read(tmp_path, chat_tokenizer, caplog) -> None:
    path = write_rows(tmp_path, 20, bad=True)
    made = processor(chat_tokenizer, on_error="skip")
    made.processors["image"] = FixedImage(made.processors["image"].config)
    dataset = MultimodalDataset(path, made, scan_headers=False)
    assert dataset.skipped.reasons == {"malformed line": 1}  # nothing else was opened
    broken = dataset.ids.index("broken")
    assert dataset[broken] is None and "skipped when read" in caplog.text


def test_workers_measure_the_same(tmp_path, chat_tokenizer, monkeypatch) -> None:
    path = write_rows(tmp_path, 1200, bad=False)  # three chunks of rows
    alone = MultimodalDataset(path, processor(chat_tokenizer, counting=False), index=False)
    monkeypatch.setattr(index_module, "PARALLEL_AFTER_SECONDS", 0.0)
    # spawned workers import this module and its helpers package by name: tests/ comes first
    # (tests/train/helpers.py would otherwise shadow the package in a full run)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    shared = MultimodalDataset(
        path, processor(chat_tokenizer, counting=False), index=False, scan_workers=2
    )
    assert torch.equal(shared.lengths, alone.lengths) and shared.ids == alone.ids
    assert shared.index.spans(1100) == alone.index.spans(1100)


def test_packing_plans_are_identical_from_the_index(tmp_path, chat_tokenizer) -> None:
    path = write_rows(tmp_path, 60)
    dataset = MultimodalDataset(path, processor(chat_tokenizer))
    processed = [dataset[i].length for i in range(len(dataset))]  # lengths by processing
    from_index = TokenBudgetSampler(dataset, 256, seed=3)
    from_processing = TokenBudgetSampler(processed, 256, seed=3)
    for epoch in (0, 1):
        assert from_index.plan(epoch) == from_processing.plan(epoch)


def test_the_cache_folder_follows_mmgen_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "elsewhere"))
    assert index_module.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("MMGEN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert index_module.cache_dir() == tmp_path / "mmgen"
    assert os.environ.get("MMGEN_CACHE") is None


def test_workers_that_cannot_start_are_an_error_not_a_hang(tmp_path, chat_tokenizer, monkeypatch):
    path = write_rows(tmp_path, 1200)
    monkeypatch.setattr(index_module, "PARALLEL_AFTER_SECONDS", 0.0)
    made = processor(chat_tokenizer, counting=False)
    made.unpicklable = threading.Lock()  # a worker cannot be given this processor
    with pytest.raises(DataError, match=r"cannot be given this processor.*scan_workers: 1"):
        MultimodalDataset(path, made, index=False, scan_workers=2)


def test_workers_that_die_while_starting_are_an_error_not_a_hang(tmp_path, chat_tokenizer,
                                                                  monkeypatch):  # fmt: skip
    """A processor that pickles here but cannot be unpickled in a worker (its class lives in a
    module only this process has): the workers die starting, the scan says so."""
    import sys
    import types

    path = write_rows(tmp_path, 1200)
    monkeypatch.setattr(index_module, "PARALLEL_AFTER_SECONDS", 0.0)
    made = processor(chat_tokenizer, counting=False)
    module = types.ModuleType("mmgen_nowhere")
    exec("class Ghost:\n    payload = b''\n", module.__dict__)  # a class no worker can import
    monkeypatch.setitem(sys.modules, "mmgen_nowhere", module)
    made.ghost = module.Ghost()
    made.ghost.payload = os.urandom(300_000)  # larger than a pipe's buffer
    start = time.monotonic()
    with pytest.raises(DataError, match=r"worker processes failed to start"):
        MultimodalDataset(path, made, index=False, scan_workers=2)
    assert time.monotonic() - start < 120

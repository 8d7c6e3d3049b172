"""Datasets from JSONL files and HF `datasets` (saved to disk and in memory): relative paths,
the scan's lengths, and bad samples raised or skipped and counted."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import datasets
import pytest
from helpers.data_samples import png_bytes, wav_bytes

from mmgen import MultimodalProcessor
from mmgen.data import MultimodalDataset
from mmgen.errors import DataError


def write_media(folder):
    (folder / "media").mkdir()
    (folder / "media" / "a.png").write_bytes(png_bytes(16, 8))
    (folder / "media" / "b.wav").write_bytes(wav_bytes(0.3, 16000))


def rows():
    ask = [
        {"role": "user", "content": "What is in <image> and <audio>?"},
        {"role": "assistant", "content": "seven"},
    ]
    return [
        {
            "id": "r0",
            "conversations": ask,
            "modalities": [
                {"type": "image", "value": {"path": "media/a.png"}},
                {"type": "audio", "value": {"path": "media/b.wav"}},
            ],
        },
        {"id": "r1", "text": "hello world"},
        {
            "id": "r2",
            "conversations": [
                {"role": "user", "content": "<image>"},
                {"role": "assistant", "content": "one"},
            ],
            "modalities": [{"type": "image", "value": "media/a.png"}],
        },
    ]


def write_jsonl(path, lines):
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


@pytest.fixture
def processor(chat_tokenizer, processors):
    return MultimodalProcessor(chat_tokenizer, processors)


def test_jsonl_with_relative_paths(tmp_path, processor, monkeypatch):
    write_media(tmp_path)
    path = write_jsonl(tmp_path / "train.jsonl", [rows()[0], "", rows()[1], rows()[2]])
    monkeypatch.chdir("/")  # paths resolve against the file's folder, not the working dir
    dataset = MultimodalDataset(path, processor)
    assert len(dataset) == 3 and dataset.ids == ["r0", "r1", "r2"]
    for i in range(3):
        sample = dataset[i]
        assert dataset.lengths[i] == sample.length
        assert dataset.items[i] == len(sample.items)
    assert [item.num_embeddings for item in dataset[0].items] == [2, 3]
    assert dataset.report() == "3 of 3 samples kept"


def test_saved_hf_dataset_with_bytes_and_paths(tmp_path, processor):
    (tmp_path / "ds_parent").mkdir()
    write_media(tmp_path / "ds_parent")
    table = datasets.Dataset.from_list(
        [
            {
                "id": "h0",
                "text": "a <image>",
                "modalities": [
                    {"type": "image", "value": {"bytes": png_bytes(8, 8), "path": None}}
                ],
            },
            {
                "id": "h1",
                "text": "b <image>",
                "modalities": [
                    {"type": "image", "value": {"bytes": None, "path": "../media/a.png"}}
                ],
            },
        ]
    )
    folder = tmp_path / "ds_parent" / "saved"
    table.save_to_disk(str(folder))
    dataset = MultimodalDataset(folder, processor)  # paths relative to the saved folder
    assert [len(dataset[i].items) for i in range(2)] == [1, 1]
    assert [dataset[i].items[0].num_embeddings for i in range(2)] == [1, 2]
    in_memory = MultimodalDataset(table, processor, base_dir=folder)
    assert in_memory.lengths.tolist() == dataset.lengths.tolist()
    splits = datasets.DatasetDict({"train": table})
    assert len(MultimodalDataset(splits, processor, split="train", base_dir=folder)) == 2
    with pytest.raises(DataError, match=r"splits \['train'\]; choose one with split="):
        MultimodalDataset(splits, processor)


def test_multi_token_layout_in_hf_dataset(processor):
    table = datasets.Dataset.from_list(
        [
            {
                "id": "m0",
                "messages": [
                    {"role": "user", "content": "<image> hi"},
                    {"role": "assistant", "content": "seven"},
                ],
                "images": [png_bytes(8, 16)],
            }
        ]
    )
    dataset = MultimodalDataset(table, processor)
    assert dataset.items.tolist() == [1] and dataset[0].items[0].num_embeddings == 2
    # datasets' Image feature: decoded PIL images, or {"bytes", "path"} dicts without decoding
    images = table.cast_column("images", datasets.List(datasets.Image()))
    assert MultimodalDataset(images, processor)[0].items[0].num_embeddings == 2
    raw = table.cast_column("images", datasets.List(datasets.Image(decode=False)))
    assert MultimodalDataset(raw, processor)[0].items[0].num_embeddings == 2


def test_missing_file_and_malformed_line(tmp_path, processor):
    with pytest.raises(DataError, match=r"data file not found: .*nope.jsonl"):
        MultimodalDataset(tmp_path / "nope.jsonl", processor)
    path = write_jsonl(tmp_path / "bad.jsonl", [rows()[1], '{"id": "x", "text": ', "[1, 2]"])
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSONL line"):
        MultimodalDataset(path, processor)


def test_bad_samples_raise_with_id_or_line(tmp_path, processor):
    write_media(tmp_path)
    corrupt = {
        "id": "c1",
        "text": "<audio>",
        "modalities": [{"type": "audio", "value": {"path": "media/a.png"}}],
    }
    path = write_jsonl(tmp_path / "t.jsonl", [rows()[1], corrupt])
    with pytest.raises(
        DataError, match=r"sample 'c1' \(.*t.jsonl:2\): field modalities\[0\] \(audio\)"
    ):
        MultimodalDataset(path, processor)
    no_id = {"text": "<image>", "modalities": []}
    path = write_jsonl(tmp_path / "u.jsonl", [no_id])
    with pytest.raises(
        DataError,
        match=r"sample at .*u.jsonl:1: field text has 1 <image> .* modalities has 0 'image' ent",
    ):
        MultimodalDataset(path, processor)


def test_skip_counts_and_reports(tmp_path, processor, caplog):
    write_media(tmp_path)
    lines = [
        rows()[0],
        "not json",
        {
            "id": "gone",
            "text": "<image>",
            "modalities": [{"type": "image", "value": "media/x.png"}],
        },
        rows()[1],
        {
            "id": "mismatch",
            "text": "<image> <image>",
            "modalities": [{"type": "image", "value": "media/a.png"}],
        },
        {
            "id": "broken",
            "text": "<image>",
            "modalities": [{"type": "image", "value": "media/b.wav"}],
        },
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="mmgen.data"):
        dataset = MultimodalDataset(path, processor, on_error="skip")
    assert dataset.ids == ["r0", "r1"]
    assert dataset.skipped.count == 4
    assert dataset.skipped.reasons == {
        "malformed line": 1,
        "missing file": 1,
        "placeholder mismatch": 1,
        "unreadable media": 1,
    }
    report = dataset.report()
    assert report.startswith(
        "2 of 6 samples kept; skipped 4 of 6 samples (1 malformed line, 1 missing file,"
        " 1 placeholder mismatch, 1 unreadable media); first malformed line: "
    )
    for reason in ("missing file", "placeholder mismatch", "unreadable media"):
        assert f"; first {reason}: " in report  # the first example of every reason
    assert "mixed.jsonl:2: malformed JSONL line" in report
    assert report in caplog.text
    # the processor's own on_error is the default
    skipping = MultimodalProcessor(processor.tokenizer, processor.processors, on_error="skip")
    assert len(MultimodalDataset(path, skipping)) == 2


def test_cache_keeps_processed_samples(tmp_path, processor):
    write_media(tmp_path)
    path = write_jsonl(tmp_path / "t.jsonl", rows())
    cached = MultimodalDataset(path, processor, cache=True)
    assert cached[0] is cached[0]
    fresh = MultimodalDataset(path, processor)
    assert fresh[0] is not fresh[0]
    assert fresh[0].input_ids.tolist() == cached[0].input_ids.tolist()


def test_list_of_dicts_and_unknown_data(processor):
    dataset = MultimodalDataset([rows()[1], {"text": "one two"}], processor)
    assert dataset.ids == ["r1", "rows[1]"]
    with pytest.raises(DataError, match=r"no usable samples .*skipped 1 of 1 samples"):
        MultimodalDataset([{"text": "<image>"}], processor, on_error="skip")
    with pytest.raises(DataError, match="cannot read a dataset from a int"):
        MultimodalDataset(3, processor)


def test_importing_mmgen_data_stays_light():
    code = "import sys, mmgen.data, mmgen.data.batch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"

"""Dataset files: JSONL, JSON lists, parquet (media as bytes columns or paths) and `datasets`
folders give the same samples; each bad file or row is one error naming file:line or file[row];
on_error: skip counts skips per reason; media_root moves where relative media paths start."""

from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.layouts import llava, multimeditron, openai, write_file, write_media

from mmgen import MultimodalProcessor
from mmgen.data import MultimodalDataset
from mmgen.data.readers import ParquetSource
from mmgen.errors import ConfigError, DataError


@pytest.fixture
def processor(chat_tokenizer, processors):
    return MultimodalProcessor(chat_tokenizer, processors)


def copies(row, n=3):
    return [{**row, "id": f"s{i}"} for i in range(n)]


def test_the_same_sample_in_every_file_format(tmp_path, processor):
    image, audio = write_media(tmp_path)
    reference = processor.process(multimeditron(), base_dir=tmp_path)
    files = {
        "train.jsonl": multimeditron(),
        "openai.jsonl": openai(image, audio),
        "llava.json": llava(),
        "bytes.parquet": llava(image, audio),  # media as binary columns
        "paths.parquet": multimeditron(),
        "openai.parquet": openai(image, audio),  # parts: structs with unused keys left null
        "saved": llava(),  # a datasets.save_to_disk folder
    }
    for name, row in files.items():
        path = write_file(tmp_path / name, copies(row))
        # a saved folder's paths start in the folder itself unless told otherwise
        root = tmp_path if name == "saved" else None
        dataset = MultimodalDataset(path, processor, media_root=root)
        assert dataset.ids == ["s0", "s1", "s2"], name
        assert dataset.lengths.tolist() == [reference.length] * 3, name
        for i in range(3):
            sample = dataset[i]
            assert sample.input_ids.tolist() == reference.input_ids.tolist(), name
            assert sample.labels.tolist() == reference.labels.tolist(), name
            for got, want in zip(sample.items, reference.items, strict=True):
                assert got.modality == want.modality and got.num_embeddings == want.num_embeddings
                assert (got.value == want.value).all(), name


def test_parquet_reads_one_row_group_at_a_time(tmp_path, processor, monkeypatch):
    image, audio = write_media(tmp_path)
    path = write_file(tmp_path / "train.parquet", copies(llava(image, audio), 5))
    reads = []
    read_row_group = pq.ParquetFile.read_row_group

    def counted(self, group, *args, **kwargs):
        reads.append(group)
        return read_row_group(self, group, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    source = ParquetSource(path)
    assert len(source) == 5 and reads == []  # opening reads the footer only
    dataset = MultimodalDataset(path, processor)
    assert reads == [0, 1, 2]  # the scan: each group of 2 rows once, in order
    assert len(dataset[4].items) == 2 and reads == [0, 1, 2]  # group 2 is still held
    assert len(dataset[0].items) == 2 and reads == [0, 1, 2, 0]  # group 0 was let go
    assert source[-1].origin == f"{path}[4]"
    copy = pickle.loads(pickle.dumps(source))  # what a DataLoader worker gets
    assert copy[3].row == source[3].row and copy[3].row["image"] == image
    with pytest.raises(IndexError):
        source[5]


def test_bad_files_are_one_error_each(tmp_path, processor):
    write_media(tmp_path)
    cases = {
        "rows.csv": (b"id,text\n", r"rows.csv: cannot read a .csv file; give .jsonl \(one"),
        "none": (b"{}", r"none: cannot read a extensionless file; give .jsonl"),
        "object.json": (b'{"rows": []}', r"object.json: expected a JSON list of rows, got an obj"),
        "lines.json": (
            b'{"text": "a"}\n{"text": "b"}\n',
            r"lines.json:2:1: not valid JSON: Extra data; a file with one object per line is JSON"
            r" Lines: name it .jsonl",
        ),
        "broken.json": (
            b'[{"text": "a"},\n {"text": }]',
            r"broken.json:2:11: not valid JSON: Expecting value",
        ),
        "latin1.json": (b'[\n{"text": "a"},\n{"text": "caf\xe9"}]', r"latin1.json:3: not UTF-8"),
        "text.parquet": (b'{"text": "a"}\n', r"text.parquet: not a parquet file: .*magic bytes"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match="^.*" + match):
            MultimodalDataset(tmp_path / name, processor, on_error="skip")
    # parquet bytes named .jsonl: one error, not a malformed line per binary chunk
    write_file(tmp_path / "real.parquet", copies(multimeditron()))
    (tmp_path / "real.jsonl").write_bytes((tmp_path / "real.parquet").read_bytes())
    with pytest.raises(DataError, match=r"real.jsonl: holds parquet data \(name it .parquet\)"):
        MultimodalDataset(tmp_path / "real.jsonl", processor, on_error="skip")
    with pytest.raises(DataError, match=r"saved is not a dataset saved with save_to_disk"):
        (tmp_path / "saved").mkdir()
        MultimodalDataset(tmp_path / "saved", processor)


def test_non_utf8_jsonl_lines_are_malformed_lines(tmp_path, processor):
    good = json.dumps({"id": "ok", "text": "hello"}).encode()
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b'\n{"text": "caf\xe9"}\n' + good + b"\n")
    with pytest.raises(
        DataError, match=r"t.jsonl:2: malformed JSONL line: not UTF-8 text \(byte 0xe9 at column 14"
    ) as caught:
        MultimodalDataset(path, processor)
    assert caught.value.reason == "malformed line"
    dataset = MultimodalDataset(path, processor, on_error="skip")  # the BOM of line 1 is fine
    assert dataset.ids == ["ok", "ok"] and dataset.skipped.reasons == {"malformed line": 1}
    assert dataset.report().startswith("2 of 3 samples kept; skipped 1 of 3 samples")


def test_rows_are_named_file_and_index(tmp_path, processor):
    image, audio = write_media(tmp_path)
    rows = [llava(image, audio), {**llava(b"GIF89a junk", audio), "id": "bad"}]
    path = write_file(tmp_path / "t.parquet", rows)
    with pytest.raises(
        DataError, match=r"sample 'bad' \(.*t.parquet\[1\]\): field image \(image\): cannot decode"
    ):
        MultimodalDataset(path, processor)
    path = write_file(tmp_path / "t.json", [llava(), 7])
    with pytest.raises(
        DataError, match=r"^sample at .*t.json\[1\]: expected a JSON object, got int"
    ):
        MultimodalDataset(path, processor)


def test_a_corrupt_parquet_row_group_names_its_rows(tmp_path, processor):
    rows = [{"id": f"r{i}", "text": f"hello {i} " * 40} for i in range(4)]
    path = write_file(tmp_path / "t.parquet", rows)
    data = bytearray(path.read_bytes())
    offset = pq.ParquetFile(path).metadata.row_group(1).column(1).data_page_offset
    data[offset + 10 : offset + 60] = b"\xff" * 50  # the page header of group 1's text column
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"t.parquet\[2\]: cannot read row group 1") as caught:
        MultimodalDataset(path, processor)
    assert "\n" not in str(caught.value)  # pyarrow's message spans two lines
    dataset = MultimodalDataset(path, processor, on_error="skip")
    assert dataset.ids == ["r0", "r1"] and dataset.skipped.reasons == {"malformed row": 2}


def test_skip_counts_each_reason(tmp_path, processor):
    image, audio = write_media(tmp_path)
    broken = openai(image, audio)
    broken["messages"][0]["content"][3]["input_audio"]["data"] = "UklGR!!"
    no_placeholder = llava()
    no_placeholder["conversations"][0]["value"] = "<audio> only"
    rows = [
        llava(),
        llava(image="media/none.png"),
        llava(image="media/b.wav"),
        7,
        {"id": "x", "conversations": [{"from": "human", "value": 3}]},
        no_placeholder,
        llava(image="https://example.com/a.png"),
        broken,
        {"id": "fine", "text": "hello"},
    ]
    dataset = MultimodalDataset(write_file(tmp_path / "t.json", rows), processor, on_error="skip")
    assert dataset.ids == ["s", "fine"]
    assert dataset.skipped.reasons == {
        "missing file": 1,
        "unreadable media": 2,  # a WAV given as the image; malformed base64
        "malformed row": 2,  # not an object; a turn whose value is a number
        "placeholder mismatch": 1,
        "remote media": 1,
    }
    assert dataset.report().startswith(
        "2 of 9 samples kept; skipped 7 of 9 samples (2 malformed rows, 1 missing file,"
        " 1 placeholder mismatch, 1 remote media, 2 unreadable media); first malformed row:"
        " sample at "
    )
    assert "t.json[3]: expected a JSON object, got int; first missing file: sample 's'" in (
        dataset.report()
    )


def test_media_root_moves_where_relative_paths_start(tmp_path, processor):
    write_media(tmp_path / "store")
    (tmp_path / "data").mkdir()
    path = write_file(tmp_path / "data" / "t.json", [llava()])
    with pytest.raises(DataError, match=r"file not found: .*data/media/a.png"):
        MultimodalDataset(path, processor)  # by default: the file's own folder
    dataset = MultimodalDataset(path, processor, media_root=tmp_path / "store")
    assert len(dataset[0].items) == 2
    with pytest.raises(TypeError, match="media_root or base_dir"):
        MultimodalDataset(path, processor, media_root=tmp_path, base_dir=tmp_path)
    table = pa.Table.from_pylist([llava()])
    pq.write_table(table, tmp_path / "data" / "t.parquet")
    saved = tmp_path / "data" / "saved"
    write_file(saved, [llava()])
    for data in (tmp_path / "data" / "t.parquet", saved):
        assert len(MultimodalDataset(data, processor, media_root=tmp_path / "store")) == 1


def test_media_root_in_the_training_config(tmp_path, processor):
    from mmgen.train.build import load_split, media_root
    from mmgen.train.config import load_config

    write_media(tmp_path / "store")
    (tmp_path / "pyproject.toml").write_text('[tool.mmgen]\npackage = "demo"\n')
    write_file(tmp_path / "data.jsonl", [llava()])
    text = (
        "model: {text_config: {model_type: llama}}\n"
        "data:\n  train: data.jsonl\n  media_root: store\n"
        "stages: [{name: full, steps: 1}]\n"
    )
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.yaml").write_text(text)
    config = load_config(tmp_path / "configs" / "train.yaml")
    assert media_root(config) == tmp_path / "store"  # relative to the project root
    assert len(load_split(config, processor, "train")[0].items) == 2
    (tmp_path / "configs" / "train.yaml").write_text(text.replace("store", "nowhere"))
    config = load_config(tmp_path / "configs" / "train.yaml")
    with pytest.raises(ConfigError, match=r"train.yaml:4: data.media_root: folder not found"):
        load_split(config, processor, "train")

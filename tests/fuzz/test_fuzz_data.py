"""Fuzzed dataset rows and media: JSON shapes and types in every layout mmgen reads,
placeholders that do and do not match the items, media values as bytes, paths (missing, a
folder, a FIFO, a device), data URLs, base64 and arrays, and media files that are truncated,
corrupt, empty, of the wrong format or with huge headers; JSONL files of random lines.

Property: opening and reading a dataset gives processed samples or raises a one-line
``DataError`` (under ``on_error: skip`` bad samples are counted, never raised, unless none is
left); a loader gives a decoded value of the right kind or a ``DataError``; each example ends in
bounded time.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import soundfile
from helpers.data_samples import CHATML, make_processors, make_tokenizer, png_bytes, wav_bytes
from helpers.fuzzing import bounded, fuzz, one_line
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from mmgen.data.dataset import MultimodalDataset
from mmgen.data.processor import MultimodalProcessor
from mmgen.errors import DataError
from mmgen.loaders import RawAudioLoader, RawImageLoader

PNG = png_bytes(16, 16)
WAV = wav_bytes(0.3, 8000)


def huge_png() -> bytes:
    data = bytearray(png_bytes(1, 1))
    at = data.index(b"IHDR")
    data[at + 4 : at + 12] = struct.pack(">II", 60_000, 60_000)
    data[at + 17 : at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at : at + 17])))
    return bytes(data)


def long_wav() -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(5000, np.float32), 1, format="WAV")  # 5000 s at 1 Hz
    return buffer.getvalue()


GOOD_MEDIA = [PNG, WAV]
media_bytes = st.one_of(
    st.sampled_from(GOOD_MEDIA),
    st.sampled_from(GOOD_MEDIA).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
    st.sampled_from(GOOD_MEDIA).flatmap(
        lambda b: st.tuples(st.integers(0, len(b) - 1), st.integers(0, 255)).map(
            lambda at: b[: at[0]] + bytes([at[1]]) + b[at[0] + 1 :]
        )
    ),
    st.binary(max_size=64),
    st.just(huge_png()),
    st.just(long_wav()),
    st.just(b""),
)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Paths a value may name: a good file, a corrupt one, a folder, a FIFO, a device."""
    folder = tmp_path_factory.mktemp("media")
    (folder / "good.png").write_bytes(PNG)
    (folder / "good.wav").write_bytes(WAV)
    (folder / "corrupt.png").write_bytes(PNG[:40])
    (folder / "dir").mkdir()
    os.mkfifo(folder / "fifo")
    return [str(folder / n) for n in ("good.png", "good.wav", "corrupt.png", "dir", "fifo")] + [
        "/dev/zero",
        "missing.png",
        "../../etc/passwd",
        "",
    ]


def media_values(places):
    as_url = media_bytes.map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode())
    return st.one_of(
        media_bytes,
        as_url,
        st.sampled_from(places),
        st.sampled_from(["data:,", "data:;base64,!!!", "https://x.org/a.png", "file://h/x"]),
        st.lists(st.floats(allow_nan=True), max_size=6),
        st.lists(st.lists(st.integers(-300, 300), max_size=3), max_size=3),
        st.fixed_dictionaries({}, optional={"bytes": media_bytes, "path": st.sampled_from(places)}),
        st.integers() | st.none() | st.booleans(),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
texts = st.lists(
    st.sampled_from(["<image>", "<audio>", "hello", " ", "\ud800", "\x00", "<ima", "ë"])
    | st.text(max_size=8),
    max_size=6,
).map("".join)


@st.composite
def rows(draw, places, objects_only=False):
    value = media_values(places)
    content = texts | st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
            st.fixed_dictionaries({"type": st.sampled_from(["image", "audio"]), "image": value}),
            st.fixed_dictionaries(
                {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": value})}
            ),
            st.fixed_dictionaries(
                {
                    "type": st.just("input_audio"),
                    "input_audio": st.fixed_dictionaries(
                        {"data": st.text(max_size=12), "format": st.just("wav")}
                    ),
                }
            ),
            json_values,
        ),
        max_size=3,
    )
    turn = st.one_of(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "", "x"]), "content": content}
        ),
        st.fixed_dictionaries(
            {"from": st.sampled_from(["human", "gpt", "bot"]), "value": texts | json_values}
        ),
        json_values,
    )
    row = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "id": json_values,
                "conversations": st.lists(turn, max_size=3) | json_values,
                "messages": st.lists(turn, max_size=3),
                "text": texts | json_values,
                "modalities": st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["image", "audio", "video"]), "value": value}
                    )
                    | json_values,
                    max_size=3,
                ),
                "image": value | st.lists(value, max_size=2),
                "audios": st.lists(value, max_size=2),
            },
        )
    )
    return row if objects_only or draw(st.integers(0, 9)) else draw(json_values)


@st.composite
def plausible_rows(draw, places):
    """Rows in the right shape whose placeholders and items may or may not match, with media
    that may or may not decode."""
    kinds = draw(st.lists(st.sampled_from(["image", "audio"]), max_size=3))
    items = [{"type": k, "value": draw(media_values(places))} for k in kinds]
    if draw(st.booleans()):
        items = items[: draw(st.integers(0, len(items)))]  # fewer items than placeholders
    question = " ".join([draw(texts), *(f"<{k}>" for k in kinds)])
    answer = draw(texts | st.sampled_from(["seven", ""]))
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"id": draw(st.text(max_size=6)), "conversations": turns, "modalities": items}


def processor(on_error: str) -> MultimodalProcessor:
    return MultimodalProcessor(make_tokenizer(CHATML), make_processors(), on_error=on_error)


def read_all(data, on_error: str) -> None:
    """Open ``data`` and process every sample: only one-line DataErrors may come out."""
    try:
        dataset = MultimodalDataset(data, processor(on_error), index=False)
    except DataError as exc:
        one_line(str(exc))
        if on_error == "skip":
            # skipping is per row: only a file that holds no rows at all is refused whole
            assert str(exc).startswith("no usable samples") or "not JSON text" in str(exc), exc
        event(f"{on_error}: refused")
        return
    for i in range(len(dataset)):
        try:
            sample = dataset[i]
        except DataError as exc:
            assert on_error == "raise", f"raised under skip: {exc}"
            one_line(str(exc))
            continue
        assert sample is None or sample.input_ids.ndim == 1
    event(f"{on_error}: read")


@fuzz(60)
@given(data=st.data(), on_error=st.sampled_from(["raise", "skip"]))
def test_rows(places, data, on_error):
    # a list in memory must hold dicts (anything else is refused whole); files hold anything
    row = rows(places, objects_only=True) | plausible_rows(places)
    batch = data.draw(st.lists(row, min_size=1, max_size=4))
    with bounded():
        read_all(batch, on_error)


@fuzz(25)
@given(data=st.data())
def test_jsonl_files(places, tmp_path_factory, data):
    def line(row):
        try:
            return json.dumps(row).encode()
        except (TypeError, ValueError):  # bytes are not JSON
            return b"{}"

    lines = data.draw(
        st.lists(
            (rows(places) | plausible_rows(places)).map(line) | st.binary(max_size=40),
            min_size=1,
            max_size=5,
        )
    )
    path = tmp_path_factory.mktemp("rows") / "train.jsonl"
    path.write_bytes(b"\n".join(lines))
    with bounded():
        read_all(str(path), data.draw(st.sampled_from(["raise", "skip"])))


@fuzz(60)
@given(payload=media_bytes, kind=st.sampled_from(["image", "audio"]), how=st.integers(0, 2))
def test_media_decoders(tmp_path_factory, payload, kind, how):
    loader = RawImageLoader() if kind == "image" else RawAudioLoader(sampling_rate=8000)
    value = payload
    if how == 1:
        path = tmp_path_factory.mktemp("media") / "file"
        path.write_bytes(payload)
        value = str(path)
    elif how == 2:
        value = {"bytes": payload}
    with bounded():
        for call in (loader.measure, loader.load):
            try:
                got = call({"value": value})
            except DataError as exc:
                one_line(str(exc))
                event(f"{kind}: refused")
                continue
            if call == loader.load:
                event(f"{kind}: decoded")
                if kind == "image":
                    assert isinstance(got, Image.Image) and got.mode == "RGB"
                else:
                    assert got.dtype == np.float32 and got.ndim == 1 and len(got) > 0

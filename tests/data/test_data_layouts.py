"""Row layouts researchers already have: LLaVA (media under the modality's name), OpenAI and
Hugging Face chat messages with typed content parts (base64, data URLs, file URLs), TRL's
placeholder-only parts; and each malformed one named by sample and field."""

from __future__ import annotations

import base64

import pytest
import torch
from helpers.data_samples import ImageProcessor, png_bytes, wav_bytes
from helpers.layouts import IMAGE, hf_chat, llava, multimeditron, openai, trl, write_media

from mmgen import BaseModalityConfig, MultimodalProcessor
from mmgen.errors import DataError


@pytest.fixture
def processor(chat_tokenizer, processors):
    return MultimodalProcessor(chat_tokenizer, processors)


def same(a, b) -> None:
    """Two processed samples hold the same tokens, labels and item values."""
    assert a.input_ids.tolist() == b.input_ids.tolist()
    assert a.labels.tolist() == b.labels.tolist()
    assert [(i.modality, i.num_embeddings, i.start) for i in a.items] == [
        (i.modality, i.num_embeddings, i.start) for i in b.items
    ]
    for x, y in zip(a.items, b.items, strict=True):
        assert torch.equal(torch.as_tensor(x.value), torch.as_tensor(y.value))


def test_every_layout_gives_the_multimeditron_sample(tmp_path, processor):
    image, audio = write_media(tmp_path)
    reference = processor.process(multimeditron(), base_dir=tmp_path)
    assert [i.modality for i in reference.items] == ["image", "audio"]
    assert [i.num_embeddings for i in reference.items] == [2, 3]  # 16x8 px; 0.3 s at 8 kHz
    rows = {
        "llava paths": llava(),
        "llava bytes": llava(image, audio),
        "openai base64": openai(image, audio),
        "hf chat paths": hf_chat(),
        "hf chat file URLs": hf_chat(
            (tmp_path / IMAGE).as_uri(), {"path": str(tmp_path / "media" / "b.wav")}
        ),
        "trl": trl(),
    }
    for name, row in rows.items():
        out = processor.process(row, base_dir=tmp_path)
        assert out.id == "s", name
        same(out, reference)


def test_llava_lists_and_any_modality_name(chat_tokenizer, processors):
    xray = ImageProcessor(BaseModalityConfig(hidden_size=8, modality_type="image"))
    processor = MultimodalProcessor(
        chat_tokenizer, {**processors, "xray": xray}, placeholder_tokens={"xray": "<scan>"}
    )
    row = {
        "id": "lv",
        "image": [png_bytes(8, 8), png_bytes(16, 8)],
        "xray": png_bytes(16, 16),
        "conversations": [
            {"from": "human", "value": "<image>\n<image> vs <scan>?"},
            {"from": "gpt", "value": "one"},
        ],
    }
    out = processor(row)
    assert [(i.modality, i.num_embeddings) for i in out.items] == [
        ("image", 1),
        ("image", 2),
        ("xray", 4),
    ]
    # an "xray" part becomes the processor's own placeholder token for it
    as_parts = {
        "id": "lv",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": png_bytes(8, 8)},
                    {"type": "text", "text": "\n"},
                    {"type": "image", "path": png_bytes(16, 8)},
                    {"type": "text", "text": " vs "},
                    {"type": "xray", "xray": png_bytes(16, 16)},
                    {"type": "text", "text": "?"},
                ],
            },
            {"role": "assistant", "content": "one"},
        ],
    }
    same(processor(as_parts), out)
    # a part under a modality name may carry base64 data, as input_audio does
    encoded = base64.b64encode(png_bytes(16, 16)).decode()
    as_parts["messages"][0]["content"][4] = {"type": "xray", "xray": {"data": encoded}}
    same(processor(as_parts), out)


def test_media_parts_take_the_items_in_their_order(processor):
    def part(width):
        return {"type": "image", "image": png_bytes(width, 8)}

    row = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [part(8), {"type": "text", "text": "and"}, part(24)]},
            {"role": "assistant", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": [part(16)]},
            {"role": "assistant", "content": "one"},
        ]
    }
    out = processor(row)
    assert [i.num_embeddings for i in out.items] == [1, 3, 2]
    assert out.items[0].start < out.items[1].start < out.items[2].start


@pytest.mark.parametrize(
    ("part", "match"),
    [
        ({"type": "video", "video": "a.mp4"}, r"content\[1\]\.type is 'video': not 'text' or a"),
        ("hello", r"content\[1\] must be an object, got str"),
        ({"type": "text", "text": 3}, r"content\[1\]\.text must be a string, got int"),
        (
            {"type": "image_url", "image_url": {"uri": "a.png"}},
            r"content\[1\]\.image_url must be a URL",
        ),
        (
            {"type": "input_audio", "input_audio": "UklGRg=="},
            r"content\[1\]\.input_audio must be an object",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "not base64!", "format": "wav"}},
            r"content\[1\]: malformed base64 in the input_audio data",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR%%"}},
            r"content\[1\]: malformed base64 in the data URL",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64"}},
            r"content\[1\]: malformed data URL: no ',' before the data",
        ),
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            r"content\[1\]: remote URL 'https://example.com/cat.png': media must be local files"
            r" \(nothing is downloaded\)",
        ),
        (
            {"type": "image", "image": "data:image/png;base64," + base64.b64encode(b"no").decode()},
            r"content\[1\] \(image\): cannot decode image bytes",
        ),
    ],
)
def test_bad_parts_name_the_sample_and_the_part(processor, part, match):
    row = {
        "id": "p7",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, part]},
            {"role": "assistant", "content": "ok"},
        ],
    }
    prefix = r"^sample 'p7' \(chat.jsonl:3\): field messages\[0\]\."
    with pytest.raises(DataError, match=prefix + match):
        processor.process(row, origin="chat.jsonl:3")


def test_audio_parts_need_an_audio_modality(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, {"image": processors["image"]})
    part = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    row = {"messages": [{"role": "user", "content": [part]}]}
    with pytest.raises(DataError, match=r"'input_audio' part holds 'audio' media, not a modality"):
        processor.process(row, origin="chat.jsonl:3")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (
            {"messages": [{"role": "user", "content": 7}]},
            r"messages\[0\]\.content must be a string or a list of parts, got int",
        ),
        (
            {"conversations": [{"from": "human", "value": None}]},
            r"conversations\[0\]\.value must be a string or a list of parts, got NoneType",
        ),
        ({"conversations": {"from": "human"}}, r"'conversations' must be a non-empty list"),
        (
            {**hf_chat(), "images": [IMAGE]},
            r"has media in the content parts \(messages\[0\]\.content\[1\]\) and in 'images'",
        ),
        (
            {**llava(), "modalities": [{"type": "image", "value": IMAGE}]},
            r"has media in 'modalities' and in 'image' and in 'audio'; keep one layout",
        ),
        (
            {**llava(), "image": "http://example.com/a.png"},
            r"field image: remote URL 'http://example.com/a.png'",
        ),
    ],
)
def test_malformed_rows_name_the_field(processor, row, match):
    row = {k: v for k, v in row.items() if k != "id"}
    with pytest.raises(DataError, match=r"^sample at rows.json\[4\]: (field )?" + match) as caught:
        processor.process(row, origin="rows.json[4]")
    assert caught.value.reason in ("malformed row", "remote media")


def test_placeholders_and_items_that_disagree(processor):
    no_placeholder = {**llava(png_bytes(8, 8), wav_bytes(0.3, 16000)), "id": "lv"}
    no_placeholder["conversations"][0]["value"] = "What is said in <audio>?"
    with pytest.raises(
        DataError,
        match=r"'lv': field conversations has 0 <image> placeholder\(s\) but image has 1 'image'",
    ) as caught:
        processor(no_placeholder)
    assert caught.value.reason == "placeholder mismatch"
    # a placeholder-only part whose column is missing
    with pytest.raises(DataError, match=r"field messages has 1 <image> placeholder\(s\) but"):
        processor({**trl(), "images": []})


def test_relative_media_resolve_against_the_given_root(tmp_path, processor):
    write_media(tmp_path)
    for row in (llava(), hf_chat(), trl(), multimeditron()):
        assert len(processor.process(row, base_dir=tmp_path).items) == 2
    with pytest.raises(DataError, match=r"field image \(image\): file not found: .*media/a.png"):
        processor.process(llava(), base_dir=tmp_path / "elsewhere")

"""Boundary tokens around every modality item (``<audio_start>`` … ``<audio_end>``): one
tokenizer token each, never learnt, counted by the length index exactly as processing places
them, read from the modality config by default, and refused when the tokenizer lacks them."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.data_samples import AudioConfig, AudioProcessor, ImageProcessor

from mmgen import BaseModalityConfig
from mmgen.constants import IGNORE_INDEX
from mmgen.data import MultimodalProcessor, add_boundary_tokens
from mmgen.errors import ConfigError

ROW = {
    "id": "r0",
    "conversations": [
        {"role": "user", "content": "Compare <image> with <audio> and <audio> please"},
        {"role": "assistant", "content": "the same"},
    ],
    "modalities": [
        {"type": "image", "value": np.zeros((16, 24, 3), dtype=np.uint8)},
        {"type": "audio", "value": np.zeros(1600, dtype=np.float32)},
        {"type": "audio", "value": np.zeros(800, dtype=np.float32)},
    ],
}


def processors(**audio_options):
    image = ImageProcessor(BaseModalityConfig(hidden_size=8, modality_type="image"))
    audio = AudioProcessor(AudioConfig(hidden_size=8, modality_type="audio", **audio_options))
    return {"image": image, "audio": audio}


def test_items_are_wrapped_in_their_boundary_tokens(chat_tokenizer) -> None:
    made = processors(boundary_start="<audio_start>", boundary_end="<audio_end>")
    added = add_boundary_tokens(chat_tokenizer, {n: p.config for n, p in made.items()})
    assert added == ["<audio_start>", "<audio_end>"]
    assert add_boundary_tokens(chat_tokenizer, {n: p.config for n, p in made.items()}) == []
    start, end = chat_tokenizer.convert_tokens_to_ids(["<audio_start>", "<audio_end>"])
    processor = MultimodalProcessor(chat_tokenizer, made)
    plain = MultimodalProcessor(chat_tokenizer, processors())
    sample, without = processor.process(ROW), plain.process(ROW)
    assert sample.length == without.length + 4  # two audio items, two tokens each
    ids = sample.input_ids.tolist()
    audio = [item for item in sample.items if item.modality == "audio"]
    assert [item.num_embeddings for item in audio] == [2, 1]
    for item in audio:
        assert ids[item.start - 1] == start and ids[item.end] == end
        assert (sample.labels[item.start - 1 : item.end + 1] == IGNORE_INDEX).all()
    image = next(item for item in sample.items if item.modality == "image")
    assert ids[image.start - 1] not in (start, end)  # the image has none
    assert ids.count(start) == ids.count(end) == 2
    (size,) = processor.measure([(ROW, None, None)])
    assert size.length == sample.length
    assert size.spans == tuple(sample.spans())
    assert processor.to_dict()["boundary_tokens"] == {"audio": ["<audio_start>", "<audio_end>"]}


def test_one_side_only_and_given_explicitly(chat_tokenizer) -> None:
    chat_tokenizer.add_tokens(["<img>"], special_tokens=True)
    processor = MultimodalProcessor(
        chat_tokenizer, processors(), boundary_tokens={"image": ("<img>", None)}
    )
    sample = processor.process(ROW)
    image = next(item for item in sample.items if item.modality == "image")
    img = chat_tokenizer.convert_tokens_to_ids("<img>")
    assert sample.input_ids[image.start - 1] == img
    assert sample.input_ids.tolist().count(img) == 1


def test_a_token_the_tokenizer_lacks_is_refused(chat_tokenizer) -> None:
    with pytest.raises(ConfigError, match=r"'<audio_start>' of 'audio' is \d+ tokens"):
        MultimodalProcessor(chat_tokenizer, processors(boundary_start="<audio_start>"))
    with pytest.raises(ConfigError, match="is a placeholder"):
        MultimodalProcessor(chat_tokenizer, processors(boundary_end="<image>"))

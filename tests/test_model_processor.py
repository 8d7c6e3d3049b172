"""build_processor hands the data side (mmgen.data.processor) each modality's processor and the
model's placeholders."""

from __future__ import annotations

import pytest
from helpers.tiny_models import tiny_multimodal, tiny_tokenizer

from mmgen.modalities.audio import AudioProcessor
from mmgen.modalities.image import ImageProcessor


def test_build_processor_passes_processors_and_placeholders(model_clip_dir, model_whisper_dir):
    pytest.importorskip("mmgen.data.processor", reason="the data side lands on branch `data`")
    model = tiny_multimodal(model_clip_dir, model_whisper_dir)
    processor = model.build_processor(tiny_tokenizer())
    assert isinstance(processor.processors["image"], ImageProcessor)
    assert isinstance(processor.processors["audio"], AudioProcessor)
    assert processor.placeholder_ids == model.placeholder_ids
    assert processor.placeholder_tokens == model.placeholder_tokens

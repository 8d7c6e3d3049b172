"""The built-in image (CLIP) and audio (Whisper) modalities, generated from specs/image.yaml and
specs/audio.yaml, against transformers' own models; and modality checkpoints that survive the
deletion of the encoder folder they were built from."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers.tiny_models import (
    IMAGE_PATCHES,
    LLM_HIDDEN,
    audio_config,
    image_config,
    random_image,
    random_wave,
    save_tiny_clip,
    save_tiny_whisper,
)
from safetensors.torch import load_file
from transformers import AutoModel, CLIPVisionModel, WhisperModel

from mmgen import AutoModality, BaseModality
from mmgen.modalities.audio import AudioModality, AudioProcessor
from mmgen.modalities.image import ImageModality, ImageProcessor


def _pixels(config, seeds):
    processor = ImageProcessor(config)
    items = [processor.process({"type": "image", "value": random_image(s)}) for s in seeds]
    return [item["value"] for item in items], items[0]["num_embeddings"]


@pytest.mark.parametrize("layer", [None, -2])
def test_clip_image_modality_matches_clip_vision_tower(model_clip_dir, layer):
    config = image_config(model_clip_dir, hidden_state=layer)
    modality = ImageModality(config).eval()
    pixels, count = _pixels(config, [0, 1, 2])
    assert count == IMAGE_PATCHES  # CLS dropped
    out = modality(pixels)
    assert out.shape == (3, IMAGE_PATCHES, LLM_HIDDEN)

    tower = CLIPVisionModel.from_pretrained(model_clip_dir).eval()
    hf = tower(pixel_values=torch.stack(pixels), output_hidden_states=True)
    features = hf.last_hidden_state if layer is None else hf.hidden_states[layer]
    torch.testing.assert_close(out, modality.projector(features[:, 1:]), rtol=0, atol=0)


def test_audio_modality_matches_whisper_encoder(model_whisper_dir):
    config = audio_config(model_whisper_dir)
    processor = AudioProcessor(config)
    items = [
        processor.process({"value": random_wave(s, seconds)}) for s, seconds in [(0, 0.3), (1, 2)]
    ]
    # each 1-s window: 16 mel bins + the frame-mask row, 40 frames; 0.3 s is one, 2 s two
    assert [tuple(item["value"].shape) for item in items] == [(1, 17, 40), (2, 17, 40)]
    # the covering frames (12 of 40, 40 + 40), the conv stem's positions, then 2x concat
    assert [item["num_embeddings"] for item in items] == [3, 10 + 10]

    modality = AudioModality(config).eval()
    out = modality([item["value"] for item in items])
    encoder = WhisperModel.from_pretrained(model_whisper_dir).get_encoder().eval()
    for rows, item, kept in zip(out, items, ([6], [20, 20]), strict=True):
        windows = item["value"][:, :-1]  # the features without the mask row
        hidden = encoder(input_features=windows).last_hidden_state
        merged = [h[:n].reshape(-1, 2 * h.shape[-1]) for h, n in zip(hidden, kept, strict=True)]
        expected = modality.projector(torch.cat(merged))  # neighbours concatenated
        torch.testing.assert_close(rows, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_modality_checkpoint_survives_deleted_encoder(tmp_path, kind):
    if kind == "image":
        source = save_tiny_clip(tmp_path / "encoder")
        config = image_config(source, max_batch_size=4)
        modality, processor_cls = ImageModality(config), ImageProcessor
        raw = random_image(5)
    else:
        source = save_tiny_whisper(tmp_path / "encoder")
        config = audio_config(source)
        modality, processor_cls = AudioModality(config), AudioProcessor
        raw = random_wave(5)
    # train-like change to every weight, so a reload from the original encoder would differ
    with torch.no_grad():
        for parameter in modality.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    value = processor_cls(config).process({"value": raw})["value"]
    expected = modality.eval()([value])

    modality.save_pretrained(tmp_path / "saved")
    shutil.rmtree(source)
    # the encoder's trained weights travel in its asset folder, once
    asset = tmp_path / "saved/assets/encoder_name_or_path"
    assert json.loads((asset / "mmgen_asset.json").read_text())["module"] == "encoder"
    in_asset = set(load_file(asset / "model.safetensors"))
    rest = set(load_file(tmp_path / "saved/model.safetensors"))
    assert in_asset == set(modality.encoder.state_dict())
    assert not any(k.startswith("encoder.") for k in rest) and rest
    for loaded in (
        type(modality).from_pretrained(tmp_path / "saved"),
        AutoModality.from_pretrained(tmp_path / "saved"),
        BaseModality.from_pretrained(tmp_path / "saved"),
        AutoModel.from_pretrained(tmp_path / "saved"),
    ):
        assert type(loaded) is type(modality)
        reprocessed = processor_cls(loaded.config).process({"value": raw})["value"]
        torch.testing.assert_close(reprocessed, value, rtol=0, atol=0)
        torch.testing.assert_close(loaded([reprocessed]), expected, rtol=0, atol=0)
    # saving a loaded modality again (over the assets it was loaded from) keeps it loadable
    loaded.save_pretrained(tmp_path / "saved")
    again = type(modality).from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(again([value]), expected, rtol=0, atol=0)


def test_loading_rejects_wrong_weights(tmp_path, model_clip_dir):
    ImageModality(image_config(model_clip_dir)).save_pretrained(tmp_path / "a")
    other = image_config(model_clip_dir, hidden_size=LLM_HIDDEN * 2)
    with pytest.raises(RuntimeError, match=r"size mismatch|Missing|Unexpected"):
        ImageModality.from_pretrained(tmp_path / "a", config=other)


def test_unknown_loading_and_saving_options_are_type_errors(tmp_path, model_clip_dir):
    from mmgen import MultimodalModel

    modality = ImageModality(image_config(model_clip_dir))
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_shard_size'"):
        modality.save_pretrained(tmp_path / "a", max_shard_size="1GB")
    modality.save_pretrained(tmp_path / "a")
    with pytest.raises(TypeError, match="unexpected keyword argument 'dtpye'"):
        ImageModality.from_pretrained(tmp_path / "a", dtpye=torch.float16)
    with pytest.raises(TypeError, match="unexpected keyword argument 'low_cpu_mem'"):
        MultimodalModel.from_pretrained(tmp_path / "a", low_cpu_mem=True)
    # what transformers' AutoModel passes along (hub options) is accepted
    assert type(AutoModel.from_pretrained(tmp_path / "a", revision="main")) is ImageModality

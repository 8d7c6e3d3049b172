"""Built-in image (CLIP, SigLIP) and audio (Whisper) modalities against transformers' own models,
and modality checkpoints that survive the deletion of the encoder they were built from."""

from __future__ import annotations

import shutil

import pytest
import torch
from helpers.tiny_models import (
    AUDIO_FRAMES,
    AUDIO_RATE,
    IMAGE_PATCHES,
    LLM_HIDDEN,
    random_image,
    random_wave,
    save_tiny_clip,
    save_tiny_whisper,
)
from transformers import AutoModel, CLIPVisionModel, SiglipVisionModel, WhisperModel

from mmgen import AutoModality, BaseModality
from mmgen.errors import ConfigError, DataError
from mmgen.modalities import (
    AudioConfig,
    AudioModality,
    AudioProcessor,
    ImageConfig,
    ImageModality,
    ImageProcessor,
)


def _pixels(config, seeds):
    processor = ImageProcessor(config)
    items = [processor.process({"type": "image", "value": random_image(s)}) for s in seeds]
    return [item["value"] for item in items], items[0]["num_embeddings"]


@pytest.mark.parametrize("layer", [None, -2])
def test_clip_image_modality_matches_clip_vision_tower(model_clip_dir, layer):
    config = ImageConfig(hidden_size=LLM_HIDDEN, encoder=str(model_clip_dir), feature_layer=layer)
    modality = ImageModality(config).eval()
    pixels, count = _pixels(config, [0, 1, 2])
    assert count == IMAGE_PATCHES  # CLS dropped
    out = modality(pixels)
    assert out.shape == (3, IMAGE_PATCHES, LLM_HIDDEN)

    tower = CLIPVisionModel.from_pretrained(model_clip_dir).eval()
    hf = tower(pixel_values=torch.stack(pixels), output_hidden_states=True)
    features = hf.last_hidden_state if layer is None else hf.hidden_states[layer]
    torch.testing.assert_close(out, modality.projector(features[:, 1:]), rtol=0, atol=0)


def test_clip_keeps_cls_when_asked(model_clip_dir):
    config = ImageConfig(hidden_size=LLM_HIDDEN, encoder=str(model_clip_dir), drop_cls=False)
    pixels, count = _pixels(config, [0])
    assert count == IMAGE_PATCHES + 1
    assert ImageModality(config)(pixels).shape[1] == count


def test_siglip_image_modality_matches_siglip_vision_tower(model_siglip_dir):
    config = ImageConfig(hidden_size=LLM_HIDDEN, encoder=str(model_siglip_dir), projector="linear")
    modality = ImageModality(config).eval()
    pixels, count = _pixels(config, [3, 4])
    assert count == IMAGE_PATCHES  # SigLIP has no CLS token
    tower = SiglipVisionModel.from_pretrained(model_siglip_dir).eval()
    expected = modality.projector(tower(pixel_values=torch.stack(pixels)).last_hidden_state)
    torch.testing.assert_close(modality(pixels), expected, rtol=0, atol=0)


def test_audio_modality_matches_whisper_encoder(model_whisper_dir):
    config = AudioConfig(hidden_size=LLM_HIDDEN, encoder=str(model_whisper_dir), pool=2)
    processor = AudioProcessor(config)
    assert processor.sampling_rate == AUDIO_RATE
    items = [
        processor.process({"value": random_wave(s, seconds)}) for s, seconds in [(0, 0.3), (1, 2)]
    ]
    assert all(item["value"].shape == (16, AUDIO_FRAMES) for item in items)
    assert items[0]["num_embeddings"] == AUDIO_FRAMES // 2 // 2

    modality = AudioModality(config).eval()
    features = [item["value"] for item in items]
    out = modality(features)
    encoder = WhisperModel.from_pretrained(model_whisper_dir).get_encoder().eval()
    hidden = encoder(input_features=torch.stack(features)).last_hidden_state
    pooled = (hidden[:, 0::2] + hidden[:, 1::2]) / 2
    torch.testing.assert_close(out, modality.projector(pooled), rtol=1e-6, atol=1e-6)


def test_audio_processor_rejects_wrong_rate_and_shape(model_whisper_dir):
    processor = AudioProcessor(AudioConfig(hidden_size=LLM_HIDDEN, encoder=str(model_whisper_dir)))
    wave = random_wave(0)
    with pytest.raises(DataError, match=r"8000 Hz.*16000 Hz"):
        processor.process({"value": {"array": wave, "sampling_rate": 8000}})
    with pytest.raises(DataError, match="mono"):
        processor.process({"value": wave.reshape(2, -1)})


def test_audio_processor_checks_the_encoder_window(model_whisper_dir):
    extractor = {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": 16,
        "sampling_rate": AUDIO_RATE,
        "hop_length": 400,
        "chunk_length": 2,
        "n_fft": 400,
    }
    config = AudioConfig(
        hidden_size=LLM_HIDDEN, encoder=str(model_whisper_dir), feature_extractor=extractor
    )
    with pytest.raises(ConfigError, match=r"80 frames.*takes 40"):
        AudioProcessor(config)


def test_modality_from_config_dict_without_pretrained_weights():
    from helpers.tiny_models import tiny_clip_processor, tiny_clip_vision_config

    config = AutoModality.config_from_dict(
        {
            "model_type": "mmgen_image",
            "hidden_size": LLM_HIDDEN,
            "encoder_config": tiny_clip_vision_config(),
            "image_processor": tiny_clip_processor().to_dict(),
            "feature_layer": -2,
        }
    )
    modality = AutoModality.from_config(config)
    pixels, count = _pixels(config, [0, 1])
    assert modality(pixels).shape == (2, count, LLM_HIDDEN)


def test_missing_encoder_is_a_clear_error():
    with pytest.raises(ConfigError, match="set `encoder`"):
        ImageModality(ImageConfig(hidden_size=LLM_HIDDEN))


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_modality_checkpoint_survives_deleted_encoder(tmp_path, kind):
    if kind == "image":
        source = save_tiny_clip(tmp_path / "encoder")
        config = ImageConfig(hidden_size=LLM_HIDDEN, encoder=str(source), max_batch_size=4)
        modality, processor_cls = ImageModality(config), ImageProcessor
        raw = random_image(5)
    else:
        source = save_tiny_whisper(tmp_path / "encoder")
        config = AudioConfig(hidden_size=LLM_HIDDEN, encoder=str(source))
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
    # saving a loaded modality again (over assets it was loaded from) keeps it loadable
    loaded.save_pretrained(tmp_path / "saved")
    again = type(modality).from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(again([value]), expected, rtol=0, atol=0)


def test_loading_rejects_wrong_weights(tmp_path, model_clip_dir):
    config = ImageConfig(hidden_size=LLM_HIDDEN, encoder=str(model_clip_dir))
    ImageModality(config).save_pretrained(tmp_path / "a")
    other = ImageConfig(hidden_size=LLM_HIDDEN * 2, encoder=str(model_clip_dir))
    with pytest.raises(RuntimeError, match=r"size mismatch|Missing|Unexpected"):
        ImageModality.from_pretrained(tmp_path / "a", config=other)

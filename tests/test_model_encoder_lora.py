"""LoRA adapters on encoders: peft layers in the encoder (never the projector) that train, saved
beside the modality in peft's files (base weights under their own names), loaded back by
``MultimodalModel.from_pretrained`` and ``BaseModality.from_pretrained``, and merged."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.model_batches import packed_batch
from helpers.tiny_models import random_image, random_wave, tiny_multimodal
from safetensors.torch import load_file

from mmgen import BaseModality, MultimodalModel
from mmgen.errors import ConfigError
from mmgen.modalities.audio import AudioProcessor
from mmgen.modalities.image import ImageProcessor
from mmgen.modality.adapters import has_lora


@pytest.fixture
def model(model_clip_dir, model_whisper_dir) -> MultimodalModel:
    return tiny_multimodal(model_clip_dir, model_whisper_dir)


def _batch(model):
    image = ImageProcessor(model.modalities["image"].config).process({"value": random_image(1)})
    audio = AudioProcessor(model.modalities["audio"].config).process({"value": random_wave(1)})
    samples = [
        [5, ("image", image["value"], image["num_embeddings"]), 6, 7],
        [8, ("audio", audio["value"], audio["num_embeddings"]), 9],
    ]
    return packed_batch(samples, model.placeholder_ids)


def _as_trained(model) -> None:
    """Adapters as if trained: LoRA's B starts at zero, which would hide a lost adapter."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.2)


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def _lora_layers(module) -> set[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n for n, m in module.named_modules() if isinstance(m, BaseTunerLayer)}


def test_adapters_sit_on_encoder_modules_and_train(model) -> None:
    adapted = model.add_encoder_lora(
        {"image": "all-linear", "audio": ["q_proj", "v_proj"]}, r=4, lora_alpha=8
    )
    assert _lora_layers(model.modalities["image"]) == set(adapted["image"])
    assert all(name.startswith("encoder.") for name in adapted["image"])  # never the projector
    assert {n.rsplit(".", 1)[-1] for n in adapted["image"]} == {
        "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"
    }  # fmt: skip
    assert {n.rsplit(".", 1)[-1] for n in adapted["audio"]} == {"q_proj", "v_proj"}
    model.add_lora(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model.set_trainable("lora")  # the LLM's and the encoders' adapters, and the projectors
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for name in trainable:
        assert "lora_" in name or ".projector." in name, name
    encoder_adapters = {n for n in trainable if ".encoder." in n}
    assert {n.split(".")[1] for n in encoder_adapters} == {"image", "audio"}

    batch = _batch(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    model(**batch).loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable
    for name in ("image", "audio"):
        assert any(n.startswith(f"modalities.{name}.encoder.") and "lora_B" in n for n in changed)
    # with adapters on the encoders only, the lora stage leaves the LLM as it is
    plain = tiny_multimodal(model.modalities["image"].config.encoder_name_or_path)
    plain.add_encoder_lora(r=2)
    plain.set_trainable("lora")
    assert not any(p.requires_grad for p in plain.language_model.parameters())
    assert any(p.requires_grad for n, p in plain.named_parameters() if "lora_" in n)


def test_target_modules_never_reach_the_projector(model) -> None:
    image = model.modalities["image"]
    assert "projector.0" in dict(image.named_modules())  # an MLP projector's first layer
    with pytest.raises(ConfigError, match="no module of ImageModality's encoder matches"):
        model.add_encoder_lora({"image": ["0"]})
    with pytest.raises(ConfigError, match=r"unknown modalities \['video'\]"):
        model.add_encoder_lora({"video": "all-linear"})
    model.add_encoder_lora({"image": r"encoder\.encoder\.layers\.0\.mlp\.fc\d"})
    assert _lora_layers(image) == {
        "encoder.encoder.layers.0.mlp.fc1",
        "encoder.encoder.layers.0.mlp.fc2",
    }
    assert not has_lora(model.modalities["audio"])
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        model.add_encoder_lora({"image": "all-linear"})


def test_outputs_survive_save_and_load(model, tmp_path, model_clip_dir, model_whisper_dir) -> None:
    model.add_encoder_lora(["q_proj", "v_proj"], r=4, lora_alpha=8)
    model.add_lora(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    _as_trained(model)
    batch = _batch(model)
    expected = _logits(model, batch)
    model.save_pretrained(tmp_path / "saved")
    adapter = tmp_path / "saved/modalities/image/adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    # the base weights are the encoder's own names: the folder loads without peft too
    encoder = load_file(tmp_path / "saved/modalities/image/assets/encoder_name_or_path"
                        / "model.safetensors")  # fmt: skip
    assert "encoder.layers.0.self_attn.q_proj.weight" in encoder
    assert not any("lora_" in k or "base_layer" in k for k in encoder)

    loaded = MultimodalModel.from_pretrained(tmp_path / "saved")
    assert all(has_lora(m) for m in loaded.modalities.values())
    torch.testing.assert_close(_logits(loaded, batch), expected, rtol=0, atol=0)
    alone = BaseModality.from_pretrained(tmp_path / "saved/modalities/audio")
    assert _lora_layers(alone) == _lora_layers(model.modalities["audio"])
    # a model without adapters saved over it leaves none behind to be loaded
    tiny_multimodal(model_clip_dir, model_whisper_dir).save_pretrained(tmp_path / "saved")
    assert not adapter.exists()
    assert not any(has_lora(m) for m in MultimodalModel.from_pretrained(tmp_path / "saved")
                   .modalities.values())  # fmt: skip


def test_merged_logits_equal_the_adapter_models(model) -> None:
    model.add_encoder_lora("all-linear", r=4, lora_alpha=8)
    _as_trained(model)
    batch = _batch(model)
    expected = _logits(model, batch)
    image = model.modalities["image"]
    base = image.encoder.encoder.layers[0].mlp.fc1.base_layer.weight.detach().clone()
    model.merge_lora()  # the encoders' adapters only: the LLM has none
    assert not any(has_lora(m) for m in model.modalities.values())
    assert not any("lora_" in n or "base_layer" in n for n, _ in model.named_parameters())
    assert not torch.equal(image.encoder.encoder.layers[0].mlp.fc1.weight, base)
    torch.testing.assert_close(_logits(model, batch), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="no LoRA adapters to merge"):
        model.merge_lora()

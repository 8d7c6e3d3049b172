"""Training stages (set_trainable) and LoRA on the LLM through peft."""

from __future__ import annotations

import pytest
import torch
from helpers.model_batches import packed_batch
from helpers.tiny_models import random_image, tiny_multimodal

from mmgen.errors import ConfigError
from mmgen.modalities.image import ImageProcessor


@pytest.fixture
def model(model_clip_dir, model_whisper_dir):
    return tiny_multimodal(model_clip_dir, model_whisper_dir)


def _batch(model):
    processor = ImageProcessor(model.modalities["image"].config)
    items = [processor.process({"value": random_image(s)}) for s in range(2)]
    image = [("image", item["value"], item["num_embeddings"]) for item in items]
    samples = [[5, 6, image[0], 7, 8, 9, 10], [11, image[1], 12, 13, 14]]
    return packed_batch(samples, model.placeholder_ids)


def _trainable(module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def _projector_names(model, name):
    return {
        f"modalities.{name}.projector.{n}"
        for n, _ in model.modalities[name].projector.named_parameters()
    }


def test_alignment_stage_trains_only_projectors(model):
    counts = model.set_trainable("alignment")
    assert _trainable(model) == _projector_names(model, "image") | _projector_names(model, "audio")
    assert counts["llm"] == 0
    assert counts["modality:image"] == sum(
        p.numel() for p in model.modalities["image"].projector.parameters()
    )


def test_explicit_parts_override_the_stage(model):
    model.set_trainable("end_to_end", encoders=["audio"], projectors={"image": False})
    trainable = _trainable(model)
    llm = {n for n in trainable if n.startswith("language_model.")}
    assert llm == {f"language_model.{n}" for n, _ in model.language_model.named_parameters()}
    assert not any(n.startswith("modalities.image.") for n in trainable)
    audio_encoder = {
        f"modalities.audio.encoder.{n}"
        for n, _ in model.modalities["audio"].encoder.named_parameters()
    }
    assert audio_encoder <= trainable
    assert _projector_names(model, "audio") <= trainable
    model.set_trainable(llm=False)  # None leaves the other parts as they were
    assert _trainable(model) == audio_encoder | _projector_names(model, "audio")


def test_bad_stage_arguments(model):
    with pytest.raises(ConfigError, match="unknown training stage 'warmup'"):
        model.set_trainable("warmup")
    with pytest.raises(ConfigError, match=r"unknown modalities \['video'\]"):
        model.set_trainable(encoders=["video"])
    with pytest.raises(ConfigError, match="add_lora"):
        model.set_trainable("lora")


def test_lora_trains_only_adapters_and_projectors(model):
    model.add_lora(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model.set_trainable("lora", projectors=["image"])
    trainable = _trainable(model)
    lora = {n for n in trainable if n.startswith("language_model.")}
    assert lora and all("lora_" in n for n in lora)
    assert trainable - lora == _projector_names(model, "image")

    batch = _batch(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        logits_before = model(**batch).logits
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    model(**batch).loss.backward()
    optimizer.step()
    model.eval()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable
    assert any("lora_B" in n for n in changed)  # B starts at zero: the step moved it
    assert _projector_names(model, "image") <= changed
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits, logits_before)


def test_lora_merge_keeps_outputs(model):
    model.add_lora(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, p in model.language_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    batch = _batch(model)
    with torch.no_grad():
        expected = model(**batch).logits
        model.merge_lora()
        assert not any("lora_" in n for n, _ in model.named_parameters())
        torch.testing.assert_close(model(**batch).logits, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="no LoRA adapters"):
        model.merge_lora()

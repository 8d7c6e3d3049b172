"""Activation checkpointing of the LLM and of encoders (per layer in transformers encoders, the
whole forward otherwise): every trainable parameter's gradient equals the one without it, and
the checkpointed layers really run again in the backward pass."""

from __future__ import annotations

import pytest
import torch
from helpers.model_batches import packed_batch
from helpers.tiny_models import (
    LLM_HIDDEN,
    audio_modality,
    image_modality,
    random_image,
    random_wave,
    tiny_llm,
)

from mmgen import AutoModalityLoader, MultimodalModel
from mmgen.errors import ConfigError
from mmgen.modalities.audio import AudioProcessor
from mmgen.modalities.ecg import EcgConfig, EcgModality, EcgProcessor
from mmgen.modalities.image import ImageProcessor
from mmgen.model.checkpointing import (
    enable_encoder_checkpointing,
    enable_llm_checkpointing,
    is_checkpointed,
)
from mmgen.testing import synthetic_value

TINY_ECG = {"in_channels": 1, "hidden_size": 16, "layers": 3, "kernel_size": 5, "stride": 2}


def _model(clip_dir, whisper_dir) -> MultimodalModel:
    """Tiny Llama with CLIP (image), Whisper (audio) and a conv1d encoder that is no
    transformers model (ecg, two items per chunk)."""
    torch.manual_seed(0)
    ecg = EcgConfig(hidden_size=LLM_HIDDEN, max_batch_size=2, encoder_options=TINY_ECG)
    modalities = {
        "image": image_modality(clip_dir),
        "audio": audio_modality(whisper_dir),
        "ecg": EcgModality(ecg),
    }
    return MultimodalModel(language_model=tiny_llm(0), modalities=modalities)


def _batch(model):
    image = ImageProcessor(model.modalities["image"].config).process({"value": random_image(1)})
    audio = AudioProcessor(model.modalities["audio"].config).process({"value": random_wave(1)})
    config = model.modalities["ecg"].config
    loader, processor = AutoModalityLoader.from_name(config.loader), EcgProcessor(config)
    ecg = []
    for seed in range(3):
        entry = {"type": "ecg", "value": synthetic_value("signal", seed, seconds=4.0)}
        ecg.append(processor.process({**entry, "value": loader(entry)}))
    items = [(name, x["value"], x["num_embeddings"]) for name, x in
             [("image", image), ("audio", audio)] + [("ecg", e) for e in ecg]]  # fmt: skip
    samples = [[5, items[0], 6, items[2], 7], [8, items[1], 9, items[3], items[4], 10]]
    return packed_batch(samples, model.placeholder_ids)


def _gradients(model, batch) -> dict[str, torch.Tensor | None]:
    """Every trainable parameter's gradient (None: the loss does not reach it, e.g. the CLIP
    layers after the hidden state the modality takes)."""
    model.train()
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    return {
        n: p.grad.clone() if p.grad is not None else None
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def _count_calls(modules: dict[str, torch.nn.Module]) -> dict[str, int]:
    counts = dict.fromkeys(modules, 0)
    for name, module in modules.items():

        def hook(*_, name=name):
            counts[name] += 1

        module.register_forward_pre_hook(hook)  # recomputation may stop early
    return counts


def test_checkpointed_gradients_equal_the_plain_ones(model_clip_dir, model_whisper_dir) -> None:
    model = _model(model_clip_dir, model_whisper_dir)
    model.set_trainable("full")  # the encoders train too
    batch = _batch(model)
    # the MLPs inside checkpointed layers (transformers checkpoints a layer's forward)
    calls = _count_calls({
        "llm": model.language_model.model.layers[0].mlp,
        "image": model.modalities["image"].encoder.encoder.layers[0].mlp,
        "audio": model.modalities["audio"].encoder.layers[0].fc2,
        "ecg": model.modalities["ecg"],
    })  # fmt: skip
    expected = _gradients(model, batch)
    plain = dict(calls)

    enable_llm_checkpointing(model.language_model)
    per_layer = {name: enable_encoder_checkpointing(m) for name, m in model.modalities.items()}
    assert per_layer == {"image": ["encoder"], "audio": ["encoder"], "ecg": []}
    assert all(is_checkpointed(m) for m in (model.language_model, *model.modalities.values()))
    got = _gradients(model, batch)
    # each checkpointed layer (and the ecg modality, checkpointed whole) ran again in backward
    assert {name: calls[name] - plain[name] for name in calls} == {
        name: 2 * count for name, count in plain.items()
    }
    assert plain["ecg"] == 2  # its three items in two chunks
    assert set(got) == set(expected) == {n for n, _ in model.named_parameters()}
    reached = {name for name, value in expected.items() if value is not None}
    assert {name for name, value in got.items() if value is not None} == reached
    for prefix in ("language_model.", *(f"modalities.{name}.encoder." for name in per_layer)):
        assert any(name.startswith(prefix) for name in reached), prefix
    for name in reached:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)
    # outside training (eval, generation) nothing is recomputed
    model.eval()
    before = dict(calls)
    with torch.no_grad():
        model(**batch)
    assert {name: calls[name] - before[name] for name in calls} == plain


def test_an_llm_that_cannot_checkpoint_is_an_error() -> None:
    with pytest.raises(ConfigError, match="does not support gradient checkpointing"):
        enable_llm_checkpointing(torch.nn.Linear(2, 2))

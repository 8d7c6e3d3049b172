"""Generated modalities plug into the runtime: two generated from built-in specs (audio with a
tiny Whisper, ecg with the built-in conv encoder) go through MultimodalProcessor, the packed
collator and MultimodalModel with a tiny Llama; one training step reaches their projectors.
"""

import importlib
import io
import sys

import numpy as np
import pytest
import soundfile
import torch
from helpers.tiny_models import LLM_HIDDEN, save_tiny_whisper, tiny_llm, tiny_tokenizer
from typer.testing import CliRunner

from mmgen import MultimodalModel, MultimodalProcessor
from mmgen.cli import app
from mmgen.data import PackedCollator
from mmgen.spec.catalog import builtin_specs


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    for name, spec in (("gen_audio", "audio"), ("gen_ecg", "ecg")):
        args = ["new-modality", name, "--spec", str(builtin_specs()[spec]), "--out", str(out)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("gen_audio"), importlib.import_module("gen_ecg")
    finally:
        sys.path.remove(str(out))


def wav(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.1 * rng.standard_normal(int(16000 * seconds)), 16000, format="WAV")
    return buffer.getvalue()


def test_one_training_step_through_the_runtime(generated, tmp_path):
    gen_audio, gen_ecg = generated
    whisper = save_tiny_whisper(tmp_path / "whisper")
    audio_config = gen_audio.GenAudioConfig(
        hidden_size=LLM_HIDDEN,
        encoder_name_or_path=str(whisper),
        processor_name_or_path=str(whisper),
    )
    ecg_config = gen_ecg.GenEcgConfig(
        hidden_size=LLM_HIDDEN, encoder_options={"hidden_size": 16, "layers": 3}
    )
    processor = MultimodalProcessor(
        tiny_tokenizer(),
        {
            "gen_audio": gen_audio.GenAudioProcessor(audio_config),
            "gen_ecg": gen_ecg.GenEcgProcessor(ecg_config),
        },
    )
    # raw-audio takes its rate from the generated processor's feature_extractor, as it should
    assert processor.loaders["gen_audio"].sampling_rate == 16000
    torch.manual_seed(0)
    model = MultimodalModel(
        language_model=tiny_llm(),
        modalities={
            "gen_audio": gen_audio.GenAudioModality(audio_config),
            "gen_ecg": gen_ecg.GenEcgModality(ecg_config),
        },
    )
    ecg = np.sin(np.linspace(0, 40, 3000)).tolist()
    samples = [
        {
            "id": "a",
            "conversations": [
                {"role": "user", "content": "what is in <gen_audio> and <gen_ecg> ?"},
                {"role": "assistant", "content": "a dog"},
            ],
            "modalities": [
                {"type": "gen_audio", "value": wav(0.6, 0)},
                {"type": "gen_ecg", "value": ecg},
            ],
        },
        {"id": "b", "text": "the sound <gen_audio> is one", "modalities": [
            {"type": "gen_audio", "value": wav(1.3, 1)}]},
    ]  # fmt: skip
    processed = [processor(sample) for sample in samples]
    # the placeholders expanded to what the generated processors counted
    audio, ecg_item = processed[0].items
    # the clip's length: 0.6 s at hop 400 = 24 frames -> 12 encoder positions -> 6 (2x concat)
    assert audio.num_embeddings == 6
    assert ecg_item.num_embeddings == 157  # ceil(2500 samples / 2**3 / downsample 2)
    placeholder = model.placeholder_ids["gen_audio"]
    # 1.3 s: a whole 1-s window (10) and 0.3 s of the next (12 frames -> 6 positions -> 3)
    assert int((processed[1].input_ids == placeholder).sum()) == 10 + 3
    batch = PackedCollator()(processed)
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    for name in ("gen_audio", "gen_ecg"):
        grads = [p.grad for p in model.modalities[name].projector.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    # the spec's trainable defaults: Whisper frozen, the conv encoder trained from scratch
    assert all(p.grad is None for p in model.modalities["gen_audio"].encoder.parameters())
    assert any(p.grad is not None for p in model.modalities["gen_ecg"].encoder.parameters())

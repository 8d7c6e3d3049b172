"""LoRA on the encoder from the config (``lora.encoder_target_modules``): the lora stage trains
the encoder's adapters and leaves its base weights, checkpoints carry them (a resumed run
repeats the uninterrupted one), and ``mmgen export`` merges them (same logits)."""

from __future__ import annotations

import json

import pytest
import torch

import mmgen
from mmgen.data.collator import left_padded
from mmgen.errors import ConfigError
from mmgen.export.merged import export
from mmgen.modality.adapters import has_lora
from mmgen.model import MultimodalModel
from mmgen.train.config import load_config
from mmgen.train.loop import train
from tests.train.helpers import train_losses

LORA = {
    "r": 4,
    "alpha": 8,
    "target_modules": ["q_proj", "v_proj"],
    "encoder_target_modules": ["q_proj", "v_proj"],
}
STAGES = [{"name": "full", "steps": 1}, {"name": "lora", "steps": 3, "lr": 3e-2, "lora": LORA}]


def _weights(folder) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in MultimodalModel.from_pretrained(folder).state_dict().items()}


def _logits(loaded, rows) -> torch.Tensor:
    samples = [loaded.processor.process(row) for row in rows]
    with torch.no_grad():
        return loaded.model(**left_padded(samples, loaded.processor.pad_token_id)).logits


def test_the_lora_stage_trains_encoder_adapters_resumes_and_exports_merged(
    config_file, audio_data, tmp_path
) -> None:
    path = config_file(stages=STAGES, checkpoint={"every": 2, "keep": 3})
    run = train(load_config(path)).output_dir
    step2, step4 = run / "checkpoints/step-00000002/model", run / "checkpoints/step-00000004/model"
    adapter = step4 / "modalities/audio/adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    assert (step4 / "llm_adapter").is_dir()
    middle, end = _weights(step2), _weights(step4)
    encoder = "modalities.audio.encoder."
    for name, value in end.items():  # within the lora stage
        adapters_or_projector = "lora_" in name or ".projector." in name
        assert torch.equal(value, middle[name]) != adapters_or_projector, name
    assert any(
        k.startswith(encoder) and "lora_B" in k and v.abs().sum() > 0 for k, v in end.items()
    )

    # resumed mid-stage from step 2, the run repeats the uninterrupted one
    resumed = train(
        load_config(path, [f"output_dir={tmp_path / 'resumed'}"]), resume=str(step2.parent)
    )
    again, reference = train_losses(resumed.output_dir), train_losses(run)
    assert sorted(again) == [3, 4]
    assert all(again[step] == reference[step] for step in again), (again, reference)

    # exported: the encoder's adapters merged into its weights, the same logits
    out = export(run, tmp_path / "exported").out
    assert not (out / "modalities/audio/adapter").exists()
    adapted, merged = mmgen.load(run), mmgen.load(out)
    assert has_lora(adapted.model.modalities["audio"])
    assert not has_lora(merged.model.modalities["audio"])
    rows = [json.loads(line) for line in (audio_data / "test.jsonl").read_text().splitlines()[:4]]
    for row in rows:
        for item in row["modalities"]:
            item["value"]["path"] = str(audio_data / item["value"]["path"])
    torch.testing.assert_close(_logits(merged, rows), _logits(adapted, rows), rtol=1e-4, atol=1e-5)
    card = (out / "README.md").read_text()
    assert (
        "merged into the LLM's weights (q_proj, v_proj) and the `audio` encoder's (q_proj, v_proj)"
        in card
    )


def test_encoder_lora_config_errors(config_file) -> None:
    lora = {**LORA, "encoder_target_modules": {"video": ["q_proj"]}}
    config = load_config(config_file(stages=[{"name": "lora", "steps": 1, "lora": lora}]))
    unknown = r"encoder LoRA names unknown modalities \['video'\]"
    with pytest.raises(ConfigError, match=rf"stages\[0\]\.lora\.encoder_target_modules: {unknown}"):
        train(config)

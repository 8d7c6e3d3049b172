"""Boundary tokens from a modality's config through training: new tokens join the tokenizer
saved with the model, the LLM's embeddings grow to match, and the loaded model's processor
wraps every item in them again."""

from __future__ import annotations

import copy
import json

from mmgen.infer.load import load
from mmgen.train.config import load_config
from mmgen.train.loop import train
from tests.train.helpers import TINY_AUDIO, make_config, write_config

BOUNDARY = {"boundary_start": "<audio_start>", "boundary_end": "<audio_end>"}


def test_a_run_adds_its_boundary_tokens_and_keeps_them(audio_data, tmp_path) -> None:
    audio = copy.deepcopy(TINY_AUDIO)
    audio["config"].update(BOUNDARY)
    config = make_config(
        audio_data,
        tmp_path / "run",
        modalities={"audio": audio},
        stages=[{"name": "full", "steps": 2}],
    )
    train(load_config(write_config(tmp_path / "train.yaml", config)))
    loaded = load(tmp_path / "run")
    tokenizer, model = loaded.processor.tokenizer, loaded.model
    start, end = tokenizer.convert_tokens_to_ids(["<audio_start>", "<audio_end>"])
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) > end > start
    assert loaded.processor.boundary_tokens["audio"] == ("<audio_start>", "<audio_end>")
    row = next(iter((audio_data / "test.jsonl").read_text().splitlines()))
    sample = loaded.processor.process(json.loads(row), base_dir=audio_data, generation=True)
    ids = sample.input_ids.tolist()
    (item,) = sample.items
    assert ids[item.start - 1] == start and ids[item.end] == end

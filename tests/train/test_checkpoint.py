"""Checkpoint folders: complete or absent, the last K kept, RNG state round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgen.errors import ConfigError
from mmgen.train.checkpoint import (
    STATE_FILE,
    CheckpointManager,
    resolve_resume,
    rng_state,
    set_rng_state,
)


def write_state(step: int):
    def write(folder: Path) -> None:
        (folder / "model").mkdir()
        (folder / "model" / "weights.bin").write_bytes(b"x" * step)
        torch.save({"step": step}, folder / STATE_FILE)

    return write


def test_keeps_the_last_k_and_finds_the_latest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    assert manager.latest() is None
    for step in (5, 10, 15):
        manager.save(step, write_state(step))
    assert [p.name for p in manager.checkpoints()] == ["step-00000010", "step-00000015"]
    assert manager.latest() == tmp_path / "step-00000015"
    assert torch.load(manager.latest() / STATE_FILE)["step"] == 15


def test_a_failed_write_leaves_no_folder_and_the_previous_checkpoint_intact(tmp_path) -> None:
    manager = CheckpointManager(tmp_path, keep=1)
    manager.save(1, write_state(1))

    def broken(folder: Path) -> None:
        (folder / "model").mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        manager.save(2, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]
    assert torch.load(manager.latest() / STATE_FILE)["step"] == 1


def test_partial_folders_of_a_killed_run_are_ignored_and_removed(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=3)
    manager.save(1, write_state(1))
    (tmp_path / ".tmp-step-00000002-999").mkdir()  # a run killed mid-write
    assert manager.latest() == tmp_path / "step-00000001"
    manager.remove_partial()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001"]


def test_saving_a_step_again_replaces_it(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    manager.save(3, write_state(3))
    manager.save(3, write_state(7))
    assert (manager.latest() / "model" / "weights.bin").read_bytes() == b"x" * 7


def test_resolve_resume(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", keep=2)
    assert resolve_resume(manager, None) is None
    assert resolve_resume(manager, "auto") is None  # nothing yet: a fresh start
    manager.save(4, write_state(4))
    assert resolve_resume(manager, "auto") == manager.latest()
    assert resolve_resume(manager, str(manager.latest())) == manager.latest()
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        resolve_resume(manager, str(tmp_path))


def test_rng_state_round_trip() -> None:
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])

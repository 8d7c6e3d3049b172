"""Checkpoint folders: complete or absent, the last K kept, verified before a resume (with a
fallback to the newest one that verifies), RNG state round trip."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgen.errors import CheckpointError, ConfigError
from mmgen.train.checkpoint import CheckpointManager, read_state, rng_state, set_rng_state
from mmgen.train.trainer_state import save_trainer_state


def state_of(step: int) -> dict:
    return {"step": step, "stage": 0, "data": {"epoch": 0, "position": step}, "world_size": 1,
            "rng": [rng_state()], "optimizer": None, "scheduler": None}  # fmt: skip


def write_state(step: int):
    def write(folder: Path) -> None:
        (folder / "model").mkdir()
        (folder / "model" / "weights.bin").write_bytes(b"x" * step)
        save_trainer_state(state_of(step), folder)

    return write


def no_lines(line: str) -> None:
    raise AssertionError(f"nothing should be said: {line}")


def test_keeps_the_last_k_and_finds_the_latest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    assert manager.latest() is None
    for step in (5, 10, 15):
        manager.save(step, write_state(step))
    assert [p.name for p in manager.checkpoints()] == ["step-00000010", "step-00000015"]
    assert manager.latest() == tmp_path / "step-00000015"
    assert read_state(manager.latest())["step"] == 15
    listed = json.loads((manager.latest() / "manifest.json").read_text())
    assert listed["step"] == 15
    assert sorted(listed["files"]) == [
        "model/weights.bin", "trainer_state.json", "trainer_state.safetensors"
    ]  # fmt: skip


def test_a_failed_write_leaves_no_folder_and_the_previous_checkpoint_intact(tmp_path) -> None:
    manager = CheckpointManager(tmp_path, keep=1)
    manager.save(1, write_state(1))

    def broken(folder: Path) -> None:
        (folder / "model").mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        manager.save(2, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]
    assert read_state(manager.latest())["step"] == 1


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
    assert read_state(manager.latest())["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003"]


def test_choose(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", keep=2)
    assert manager.choose(None, no_lines) is None
    assert manager.choose("auto", no_lines) is None  # nothing yet: a fresh start
    manager.save(4, write_state(4))
    path, state = manager.choose("auto", no_lines)
    assert path == manager.latest() and state["step"] == 4
    assert manager.choose(str(manager.latest()), no_lines)[0] == manager.latest()
    with pytest.raises(CheckpointError, match=r"manifest\.json: not a valid checkpoint: missing"):
        manager.choose(str(tmp_path), no_lines)
    with pytest.raises(ConfigError, match="no such checkpoint folder"):
        manager.choose(str(tmp_path / "nowhere"), no_lines)


def test_falls_back_to_the_newest_checkpoint_that_verifies(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=3)
    for step in (2, 4, 6):
        manager.save(step, write_state(step))
    weights = tmp_path / "step-00000006" / "model" / "weights.bin"
    weights.write_bytes(b"y" * 6)  # same size, other bytes
    (tmp_path / "step-00000004" / "trainer_state.json").unlink()
    said: list[str] = []
    path, state = manager.choose("auto", said.append)
    assert path.name == "step-00000002" and state["step"] == 2
    assert len(said) == 3, said
    assert "step-00000006 does not verify" in said[0] and "weights.bin" in said[0]
    assert "SHA-256 differs" in said[0] and "moved aside to step-00000006.invalid" in said[0]
    assert "step-00000004 does not verify" in said[1] and "trainer_state.json" in said[1]
    assert said[2] == "resuming from step-00000002, the newest checkpoint that verifies"
    # the broken ones are out of the rotation, kept for inspection; --overwrite removes them
    assert [p.name for p in manager.checkpoints()] == ["step-00000002"]
    assert (tmp_path / "step-00000006.invalid").is_dir()
    manager.clear()
    assert list(tmp_path.iterdir()) == []


def test_when_none_verifies_one_line_says_so(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2):
        manager.save(step, write_state(step))
        (tmp_path / f"step-{step:08d}" / "manifest.json").unlink()
    with pytest.raises(CheckpointError) as caught:
        manager.choose("auto", no_lines)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot resume: none of the 2 checkpoint(s) in {tmp_path} verifies")
    assert "step-00000002" in message and "--overwrite" in message
    assert [p.name for p in manager.checkpoints()] == ["step-00000001", "step-00000002"]


def test_a_legacy_pickle_state_is_refused_unread(tmp_path: Path) -> None:
    folder = tmp_path / "step-00000003"
    folder.mkdir()
    (folder / "trainer_state.pt").write_bytes(b"not even read")
    expected = r"trainer_state\.pt: not a valid checkpoint: a pickle"
    with pytest.raises(CheckpointError, match=expected):
        read_state(folder)


def test_rng_state_round_trip() -> None:
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])

"""Checkpoints: complete or absent, verified before a run resumes from one, the last K kept.

A checkpoint folder ``<dir>/step-00000100/`` holds::

    model/                       the MultimodalModel's save_pretrained (+ tokenizer), loadable
                                 on its own and self-contained (encoder assets included)
    trainer_state.json           step, stage, data position, optimizer/scheduler settings, RNG
    trainer_state.safetensors    the optimizer's and RNG's tensors (see ``trainer_state``)
    train.yaml                   the config the run was started with
    manifest.json                every other file's size and SHA-256, written last

It is written in a temp folder and renamed (``manifest.publish``), so a folder named ``step-*``
was complete when written. Resuming verifies the newest checkpoint against its manifest and falls
back to the newest one that verifies, moving the broken ones aside (``step-*.invalid``). Nothing
in a checkpoint is unpickled: a checkpoint someone else wrote cannot run code.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.errors import CheckpointError, ConfigError, MmgenError
from mmgen.train import manifest
from mmgen.train.trainer_state import load_trainer_state

MODEL_DIR = "model"
CONFIG_FILE = "train.yaml"
LEGACY_STATE_FILE = "trainer_state.pt"  # a pickle, as mmgen wrote before: never loaded
INVALID_SUFFIX = ".invalid"
_NAME = re.compile(r"^step-(\d{8,})$")


class CheckpointManager:
    """Saves and finds checkpoints under ``directory`` (rank 0 writes; others only read)."""

    def __init__(self, directory: Path, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Checkpoint folders, oldest first (verified only by ``choose``)."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name) and p.is_dir()]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def remove_partial(self) -> None:
        """Delete temp folders a killed run left behind."""
        manifest.remove_partial(self.directory)

    def clear(self) -> None:
        """Delete every checkpoint, broken ones included (``--overwrite``)."""
        for path in self.checkpoints():
            shutil.rmtree(path)
        if self.directory.is_dir():
            for path in self.directory.glob(f"step-*{INVALID_SUFFIX}*"):
                shutil.rmtree(path, ignore_errors=True)

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Call ``write(folder)`` on a temp folder, add the manifest, rename it to
        ``step-<step>`` and drop the oldest checkpoints beyond ``keep``. Returns the folder."""
        final = manifest.publish(self.directory / f"step-{step:08d}", write, step=step)
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def quarantine(self, path: Path) -> Path:
        """Rename a broken checkpoint out of the way (kept for inspection, never resumed)."""
        target = path.with_name(path.name + INVALID_SUFFIX)
        number = 1
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}{INVALID_SUFFIX}{number}")
        os.replace(path, target)
        return target

    def choose(self, resume: str | None, say: Callable[[str], None]):
        """The checkpoint ``--resume`` means, verified, with its trainer state: ``(folder,
        state)``, or None for a fresh start.

        ``resume="auto"``: the newest checkpoint that verifies (None when there is none yet);
        newer ones that do not are moved aside, saying which and why. A folder: that checkpoint,
        which must verify. Raises ``CheckpointError`` (one line) when nothing can be resumed.
        """
        if resume is None:
            return None
        if resume != "auto":
            path = Path(resume)
            if not path.is_dir():
                raise ConfigError(f"--resume-from {resume}: no such checkpoint folder")
            return path, read_state(path)
        found = self.checkpoints()
        broken: list[tuple[Path, CheckpointError]] = []
        for path in reversed(found):
            try:
                state = read_state(path)
            except CheckpointError as error:
                broken.append((path, error))
                continue
            for bad, error in broken:
                moved = self.quarantine(bad)
                say(f"checkpoint {bad.name} does not verify ({error}); moved aside to {moved.name}")
            if broken:
                say(f"resuming from {path.name}, the newest checkpoint that verifies")
            return path, state
        if not found:
            return None
        newest, error = broken[0]
        raise CheckpointError(
            f"cannot resume: none of the {len(found)} checkpoint(s) in {self.directory} verifies"
            f" (the newest, {newest.name}: {error}); pass --overwrite to start again"
        )


def read_state(folder: Path) -> dict[str, Any]:
    """The trainer state of the checkpoint ``folder`` once every file of the folder verifies
    against its manifest; a ``CheckpointError`` naming the file otherwise."""
    legacy = folder / LEGACY_STATE_FILE
    if legacy.exists():
        raise CheckpointError(
            f"{legacy}: not a valid checkpoint: a pickle (an older mmgen's format), which mmgen"
            " does not load because unpickling can run code"
        )
    manifest.verify_manifest(folder)
    return load_trainer_state(folder)


@contextlib.contextmanager
def invalid(folder: Path):
    """Whatever a damaged or crafted file of a checkpoint (or saved model) makes transformers,
    peft or safetensors raise while it is read becomes a ``CheckpointError`` naming the folder
    (mmgen's own errors, a user's mistake, pass as they are)."""
    try:
        yield
    except MmgenError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{folder}: not a valid checkpoint: {type(exc).__name__}: {first}"
        ) from None


def check_finite(model: torch.nn.Module, folder: Path) -> None:
    """A saved model whose weights hold NaN or inf would train on as NaN: refuse it."""
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(
                f"{folder}: not a valid checkpoint: {name} holds non-finite values"
            )


def rng_state() -> dict[str, Any]:
    """Every random generator a step may draw from (dropout, shuffling in user code)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``; a state that does not fit is a ``CheckpointError``."""
    try:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        why = f"its RNG state does not fit ({exc})"
        raise CheckpointError(f"not a valid checkpoint: {why}") from None


def rescale_position(state: dict[str, Any], world_size: int, say: Callable[[str], None]) -> None:
    """Resuming on another number of processes: each rank's batches of an epoch change, so keep
    the fraction of the epoch that was done (the data order is no longer exactly the same)."""
    before = int(state.get("world_size", world_size))
    if before != world_size:
        data = state["data"]
        data["position"] = data["position"] * before // world_size
        say(f"warning: the checkpoint was written by {before} processes, this run has "
            f"{world_size}: the data order continues approximately")  # fmt: skip
    if before != world_size or len(state["rng"]) != world_size:
        state["rng"] = state["rng"][:1] * world_size

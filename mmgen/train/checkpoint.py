"""Checkpoints: written to a temp folder then renamed (never half-written), the last K kept.

A checkpoint folder ``<dir>/step-00000100/`` holds::

    model/              the MultimodalModel's save_pretrained (+ tokenizer): loadable on its own
    trainer_state.pt    optimizer, scheduler, data position, RNG states, step/stage counters
    train.yaml          the config the run was started with

``trainer_state.pt`` is written last and the rename makes the folder visible, so a folder named
``step-*`` is always complete. Temp folders left by a killed run are removed on the next start.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.errors import ConfigError

STATE_FILE = "trainer_state.pt"
MODEL_DIR = "model"
CONFIG_FILE = "train.yaml"
_NAME = re.compile(r"^step-(\d{8,})$")
_TMP_PREFIX = ".tmp-"


class CheckpointManager:
    """Saves and finds checkpoints under ``directory`` (rank 0 writes; others only read)."""

    def __init__(self, directory: Path, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name) and p.is_dir()]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def remove_partial(self) -> None:
        """Delete temp folders a killed run left behind."""
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name.startswith(_TMP_PREFIX):
                    shutil.rmtree(path, ignore_errors=True)

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Call ``write(folder)`` on a temp folder, then rename it to ``step-<step>`` and drop the
        oldest checkpoints beyond ``keep``. Returns the final folder."""
        final = self.directory / f"step-{step:08d}"
        tmp = self.directory / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            _fsync_tree(tmp)
            if final.exists():  # the same step saved again (e.g. a signal right after a save)
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def resolve_resume(manager: CheckpointManager, resume: str | None) -> Path | None:
    """The checkpoint ``--resume`` means: ``"auto"`` (the latest, or None when there is none
    yet: a fresh start) or an explicit checkpoint folder."""
    if resume is None:
        return None
    if resume == "auto":
        return manager.latest()
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE})")
    return path


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
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    # the rename must not become visible before the data it points at is on disk
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())

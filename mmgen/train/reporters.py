"""Where metrics go besides ``metrics.jsonl``: TensorBoard event files and a Weights & Biases run
(``logging.report_to``). Each package is imported only when the run asks for it.

A record ``{"kind": "train", "step": 10, "loss": 1.2, "sources": {"asr": 0.7}}`` becomes the
scalars ``train/loss`` and ``train/sources/asr`` at step 10 in both.

Resuming: TensorBoard's writer starts with ``purge_step`` past the checkpoint, so readers drop
the events the interrupted run logged after it (they are logged again). A W&B run keeps its id in
the trainer state and is continued (``resume="allow"``); W&B cannot drop history, so records of
steps it already holds are not sent again (on CPU they equal the first ones: a resumed run
repeats the uninterrupted one). Offline, the resumed part is a second ``offline-run-*`` folder
with the same run id, which ``wandb sync`` joins into that run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgen.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"  # <output_dir>/tensorboard


def scalars(kind: str, values: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """``(tag, number)`` for every number of a record (a dict of numbers: one tag each)."""
    for key, value in values.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            yield f"{kind}/{key}", value
        elif isinstance(value, dict):  # e.g. a mixture's token share per source
            for name, number in value.items():
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    yield f"{kind}/{key}/{name}", number


class TensorBoardReporter:
    def __init__(self, folder: Path, *, resumed_at: int | None, optional: bool = False) -> None:
        """``resumed_at``: the checkpoint's step of a resumed run (None: a fresh run)."""
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            if optional:  # logging.tensorboard: auto (deprecated)
                return
            raise ConfigError(
                "logging.report_to lists tensorboard: `pip install tensorboard`"
            ) from None
        purge = None if resumed_at is None else resumed_at + 1
        self.writer = SummaryWriter(str(folder / TENSORBOARD_DIR), purge_step=purge)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for tag, number in scalars(kind, values):
            self.writer.add_scalar(tag, number, step)
        self.writer.flush()  # a reader (or a crash) sees every record logged so far

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbReporter:
    def __init__(
        self,
        folder: Path,
        *,
        project: str,
        name: str | None,
        tags: list[str],
        mode: str | None,
        run_id: str | None,
        config: dict[str, Any],
    ) -> None:
        """A W&B run writing under ``folder/wandb``; ``run_id``: the run to continue (a resumed
        training run's), None for a new one. ``mode`` None leaves it to ``$WANDB_MODE``."""
        try:
            import wandb
        except ImportError:
            raise ConfigError("logging.report_to lists wandb: `pip install wandb`") from None
        options: dict[str, Any] = {"mode": mode} if mode is not None else {}
        try:
            self.run = wandb.init(
                project=project,
                name=name or folder.name,
                tags=tags or None,
                dir=str(folder),
                id=run_id,
                resume="allow" if run_id else None,
                config=config,
                **options,
            )
        except Exception as exc:  # e.g. online without a login: one line, not wandb's trace
            raise ConfigError(
                f"logging.report_to wandb: wandb.init failed ({exc}); `wandb login`, or set"
                " WANDB_MODE=offline to log to a local run folder"
            ) from None
        self.run_id = self.run.id
        # W&B keeps one row per step and refuses earlier steps: a continued run sends only
        # the steps it does not hold yet
        self.first_step = self.run.step if run_id else 0

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if step < self.first_step:
            return
        row = dict(scalars(kind, values))
        if row:
            self.run.log(row, step=step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

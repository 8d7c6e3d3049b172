"""Metrics of a run: one JSON object per line in ``<output_dir>/metrics.jsonl`` (and TensorBoard
scalars when ``tensorboard`` is installed), plus the console progress bar.

Records are ``{"kind": "train"|"eval"|"test", "step": N, ...values}``; a mixture's train records
add ``"sources": {name: share of the window's real tokens}``. A resumed run first drops
the records an interrupted attempt logged after the checkpoint it resumes from (they are logged
again), then appends, so every record appears once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgen.errors import ConfigError

METRICS_FILE = "metrics.jsonl"


class Metrics:
    """Writes records on rank 0; every other rank gets a silent instance."""

    def __init__(
        self,
        folder: Path,
        *,
        enabled: bool,
        tensorboard: bool | str = "auto",
        fresh: bool = False,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """``fresh``: start an empty file; otherwise append, after dropping the records for which
        ``keep(record)`` is False (a resumed run's records past its checkpoint)."""
        self.path = Path(folder) / METRICS_FILE
        self.enabled = enabled
        self._file = None
        self._board = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not fresh and keep is not None and self.path.is_file():
            _rewrite(self.path, keep)
        self._file = self.path.open("w" if fresh else "a", encoding="utf-8")
        if tensorboard:
            self._board = _summary_writer(self.path.parent / "tensorboard", tensorboard == "auto")

    def log(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, **values, "time": round(time.time(), 3)}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # a crash loses no line that was logged
        if self._board is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._board.add_scalar(f"{kind}/{key}", value, step)
                elif isinstance(value, dict):  # e.g. a mixture's token share per source
                    for name, number in value.items():
                        self._board.add_scalar(f"{kind}/{key}/{name}", number, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._board is not None:
            self._board.close()
            self._board = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics file, the last one per (kind, step), in step order. A line that
    is not a record (the torn last line of a killed run) is left out."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for record in _records(Path(path)):
        latest[(record["kind"], record["step"])] = record
    return sorted(latest.values(), key=lambda r: (r["step"], r["kind"]))


def _records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and "kind" in record:
            records.append(record)
    return records


def logged_before(record: dict[str, Any], step: int, final_step: int) -> bool:
    """Whether a record an interrupted run logged stays when a run resumes from its checkpoint
    of ``step``: records of later steps are logged again, and so are the final evaluations at
    ``step`` when that is also the resumed run's last step (its end runs them again)."""
    at = record.get("step")
    if not isinstance(at, int) or at > step:
        return False
    return at < step or record.get("kind") == "train" or step < final_step


def _rewrite(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Keep the records ``keep`` accepts (atomically: a crash leaves the old file or the new)."""
    lines = [json.dumps(record) + "\n" for record in _records(path) if keep(record)]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def _summary_writer(folder: Path, optional: bool):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer needs the tensorboard package
        if optional:
            return None
        raise ConfigError("logging.tensorboard: true needs `pip install tensorboard`") from None
    return SummaryWriter(str(folder))


class Progress:
    """A tqdm bar on a terminal (rank 0); plain lines every ``every`` steps otherwise (CI logs)."""

    def __init__(self, total: int, initial: int, *, enabled: bool, every: int) -> None:
        self.enabled, self.every = enabled, every
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self.total = total

    def update(self, step: int, values: dict[str, float]) -> None:
        """``step`` optimizer steps are done; ``values`` are the latest figures."""
        if not self.enabled:
            return
        shown = {
            "loss": f"{values['loss']:.4f}" if "loss" in values else "-",
            "tok/s": f"{values['tokens_per_s']:.0f}",
            "packing": f"{values['packing']:.0%}",
        }
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(shown, refresh=False)
        elif step % self.every == 0 or step == self.total:
            text = "  ".join(f"{k} {v}" for k, v in shown.items())
            print(f"step {step}/{self.total}  {text}", flush=True)

    def write(self, line: str) -> None:
        """Print ``line`` (above the bar when there is one; even when the bar is disabled)."""
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass
class Window:
    """Figures since the last metrics line: mean loss, tokens/s, packing efficiency, the share
    of step time spent waiting for data (``data_wait``: near 1, data is the bottleneck; raise
    ``data.num_workers``), and a mixture's share of real tokens per source."""

    losses: list[float] = field(default_factory=list)
    tokens: float = 0.0
    slots: float = 0.0
    seconds: float = 0.0
    waiting: float = 0.0
    latest: dict[str, float] = field(default_factory=dict)
    sources: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        loss: float | None,
        tokens: float,
        slots: float,
        seconds: float,
        waiting: float = 0.0,
        sources: dict[str, float] | None = None,
    ) -> None:
        """One step's figures; ``loss`` None for a step skipped for a non-finite loss;
        ``waiting`` of the step's ``seconds`` went to getting its batches; ``sources``: a
        mixture's real tokens per source in the step."""
        if loss is not None:
            self.losses.append(loss)
        for name, count in (sources or {}).items():
            self.sources[name] = self.sources.get(name, 0.0) + count
        self.tokens, self.slots, self.seconds = (
            self.tokens + tokens, self.slots + slots, self.seconds + seconds,
        )  # fmt: skip
        self.waiting += waiting
        self.latest = {
            "tokens_per_s": self.tokens / max(self.seconds, 1e-9),
            "packing": self.tokens / max(self.slots, 1.0),
            "data_wait": self.waiting / max(self.seconds, 1e-9),
        }
        if loss is not None:
            self.latest["loss"] = loss

    def flush(self, scheduler) -> dict[str, Any]:
        """The window's figures (its mean loss over the steps that were not skipped)."""
        values = {k: v for k, v in self.latest.items() if k != "loss"}
        if self.losses:
            values["loss"] = sum(self.losses) / len(self.losses)
        values["lr"] = scheduler.get_last_lr()[0]
        if self.sources:  # rounded: the shares are for reading, the counts are in the plan
            total = max(sum(self.sources.values()), 1.0)
            values["sources"] = {k: round(v / total, 4) for k, v in self.sources.items()}
        self.losses, self.tokens, self.slots, self.seconds = [], 0.0, 0.0, 0.0
        self.waiting = 0.0
        self.sources = {}
        return values

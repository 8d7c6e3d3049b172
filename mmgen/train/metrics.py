"""Metrics of a run: one JSON object per line in ``<output_dir>/metrics.jsonl``, always (resume,
the plot and the model card read it), TensorBoard scalars and a W&B run when
``logging.report_to`` lists them (``reporters.py``), plus the console progress bar.

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
from typing import TYPE_CHECKING, Any

from mmgen.train.reporters import TensorBoardReporter, WandbReporter

if TYPE_CHECKING:
    from mmgen.train.config import LoggingSection

METRICS_FILE = "metrics.jsonl"


class Metrics:
    """Writes records on rank 0; every other rank gets a silent instance."""

    def __init__(
        self,
        folder: Path,
        *,
        enabled: bool,
        fresh: bool = False,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        logging: LoggingSection | None = None,
        resumed_at: int | None = None,
        wandb_run_id: str | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        """``fresh``: start an empty file; otherwise append, after dropping the records for which
        ``keep(record)`` is False (a resumed run's records past its checkpoint of step
        ``resumed_at``). ``logging`` says where else records go (default: nowhere);
        ``wandb_run_id`` is the W&B run a resumed run continues, ``run_config`` what a new W&B
        run records as its config."""
        self.path = Path(folder) / METRICS_FILE
        self.enabled = enabled
        self._file = None
        self._reporters: list[Any] = []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not fresh and keep is not None and self.path.is_file():
            _rewrite(self.path, keep)
        self._file = self.path.open("w" if fresh else "a", encoding="utf-8")
        try:
            self._reporters = _open_reporters(
                self.path.parent, logging, resumed_at, wandb_run_id, run_config
            )
        except BaseException:
            self.close()
            raise

    @property
    def wandb_run_id(self) -> str | None:
        """The W&B run's id (kept in the trainer state: a resumed run continues that run)."""
        return next((r.run_id for r in self._reporters if isinstance(r, WandbReporter)), None)

    def log(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, **values, "time": round(time.time(), 3)}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # a crash loses no line that was logged
        for reporter in self._reporters:
            reporter.log(kind, step, values)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        while self._reporters:
            self._reporters.pop().close()


def _open_reporters(
    folder: Path,
    logging: LoggingSection | None,
    resumed_at: int | None,
    wandb_run_id: str | None,
    run_config: dict[str, Any] | None,
) -> list[Any]:
    if logging is None:
        return []
    opened: list[Any] = []
    try:
        if "tensorboard" in logging.reporters:
            optional = logging.tensorboard == "auto"
            opened.append(TensorBoardReporter(folder, resumed_at=resumed_at, optional=optional))
        if "wandb" in logging.reporters:
            options = logging.wandb
            wandb = WandbReporter(
                folder, project=options.project, name=options.name, tags=options.tags,
                mode=options.mode, run_id=wandb_run_id, config=run_config or {},
            )  # fmt: skip
            opened.append(wandb)
    except BaseException:
        for reporter in opened:
            reporter.close()
        raise
    return opened


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

"""What an export starts from: the model folder PATH means (``mmgen.infer.load.model_folder``),
and, when it belongs to a run, the training config it was trained with and the run's metrics up
to its step (for the model card)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmgen.infer.load import model_folder
from mmgen.train import checkpoint as checkpoints
from mmgen.train import manifest
from mmgen.train.metrics import METRICS_FILE, read_metrics


@dataclass
class Source:
    folder: Path  # the model folder that is loaded
    covered_by: Path | None  # the folder whose manifest covers it (a checkpoint, or folder)
    run: Path | None = None  # the run folder, when the model is one of a run's
    train_config: dict[str, Any] | None = None  # the run's train.yaml, as it ran
    metrics: list[dict[str, Any]] = field(default_factory=list)  # records up to ``step``
    step: int | None = None  # the optimizer step the model was saved at

    def protected(self) -> list[Path]:
        """Folders an export must not write into or over."""
        return [p for p in (self.folder, self.covered_by, self.run) if p is not None]


def resolve(path: Path, checkpoint: str | int | None = None) -> Source:
    """The model folder ``path`` (a run, checkpoint or model folder) means, with its run's
    training config and metrics where they can be found. A bad path is a one-line
    ``ConfigError``."""
    path = Path(path)
    folder, covered_by = model_folder(path, checkpoint)
    source = Source(folder, covered_by)
    chosen = covered_by if covered_by not in (None, folder) else None  # a checkpoint's folder
    if folder != path and covered_by != path:
        run = path  # model_folder went into a run folder
    elif chosen is not None and _looks_like_run(chosen.parent.parent):
        run = chosen.parent.parent  # a checkpoint: <run>/checkpoints/step-N
    elif folder.name == checkpoints.MODEL_DIR and _looks_like_run(folder.parent):
        run = folder.parent  # a run's final model/
    else:
        run = None
    if run is not None and chosen is None and folder == run / checkpoints.MODEL_DIR:
        latest = checkpoints.CheckpointManager(run / "checkpoints", keep=1).latest()
        if latest is not None and (latest / checkpoints.CONFIG_FILE).is_file():
            chosen = latest  # the final model: the config of the run's last checkpoint
    if chosen is not None:
        source.train_config = _read_yaml(chosen / checkpoints.CONFIG_FILE)
        run = run or _output_dir(source.train_config)  # a checkpoint kept elsewhere
    source.run = run
    if covered_by is not None:
        source.step = _manifest_step(covered_by)
    if run is not None and (run / METRICS_FILE).is_file():
        records = read_metrics(run / METRICS_FILE)
        if source.step is not None:
            records = [r for r in records if r["step"] <= source.step]
        source.metrics = records
        if source.step is None and records:
            source.step = max(r["step"] for r in records)
    return source


def _looks_like_run(folder: Path) -> bool:
    return (folder / "checkpoints").is_dir() or (folder / METRICS_FILE).is_file()


def _output_dir(config: dict[str, Any] | None) -> Path | None:
    out = Path(str((config or {}).get("output_dir") or ""))
    if out.is_absolute() and out.is_dir():
        return out
    return None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None  # the card then says less; the model itself is verified by its manifest
    return loaded if isinstance(loaded, dict) else None


def _manifest_step(folder: Path) -> int | None:
    try:
        step = json.loads((folder / manifest.MANIFEST_FILE).read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None

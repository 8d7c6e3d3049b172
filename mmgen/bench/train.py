"""``mmgen bench train CONFIG``: the training loop's throughput with packed vs padded batches.

    mmgen bench train configs/train.yaml --steps 60

Runs the config's first stage for ``steps`` optimizer steps once per layout (same data, model and
optimizer; no evaluation): packed, padded with random batches, and padded with length-grouped
batches (``packing.group_by_length``, transformers' ``group_by_length``: the padded baseline users
actually run). It reports useful (non-padding) tokens per second: the median over logging windows
after the first, which holds warm-up. Padded batches hold ``packing.batch_size`` samples; set it
to about the samples one pack holds for a like-for-like comparison. Samples of one length
(nothing to pad) favour padding; long-tailed lengths favour packing.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
from pathlib import Path

from mmgen.bench.table import emit

LAYOUTS = {  # name -> config overrides
    "packed": ["packing.layout=packed", "packing.group_by_length=false"],
    "padded": ["packing.layout=padded", "packing.group_by_length=false"],
    "padded, length-grouped": ["packing.layout=padded", "packing.group_by_length=true"],
}


def run(config_path: Path, *, steps: int, overrides: list[str], as_json: bool) -> str:
    from mmgen.train.config import load_config
    from mmgen.train.loop import train
    from mmgen.train.metrics import read_metrics

    rows = []
    for layout, settings in LAYOUTS.items():
        config = load_config(config_path, [*overrides, *settings])
        with tempfile.TemporaryDirectory(prefix="mmgen-bench-") as out:
            _bench_only(config, steps, out)
            with contextlib.redirect_stdout(io.StringIO()):
                train(config)
            records = [r for r in read_metrics(Path(out) / "metrics.jsonl") if r["kind"] == "train"]
        windows = records[1:] or records
        rows.append([
            layout,
            statistics.median(r["tokens_per_s"] for r in windows),
            statistics.median(r["packing"] for r in windows),
            records[-1]["loss"],
        ])  # fmt: skip
    padded, grouped = rows[1][1], rows[2][1]
    rows = [[*row[:2], row[1] / padded, row[1] / grouped, *row[2:]] for row in rows]
    columns = ["layout", "tokens/s", "x padded", "x grouped", "useful slots", "last loss"]
    meta = {"config": str(config_path), "steps": steps, "window": f"{config.logging.every} steps"}
    title = "mmgen bench train: packed vs padded (random, length-grouped) training steps"
    return emit(title, columns, rows, as_json=as_json, **meta)


def _bench_only(config, steps: int, out: str) -> None:
    """The first stage for ``steps`` steps into ``out``: no evaluation, plot or checkpoints."""
    config.stages = [config.stages[0].model_copy(update={"steps": steps})]
    config.output_dir = out
    config.checkpoint.dir = str(Path(out) / "checkpoints")
    config.checkpoint.every = None
    config.data.eval = config.data.test = None
    config.eval.every = None
    config.logging.every = max(1, min(config.logging.every, steps // 4))
    config.logging.plot = config.logging.progress = False

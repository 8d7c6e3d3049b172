"""``mmgen bench train CONFIG``: the training loop's throughput with packed vs padded batches.

    mmgen bench train configs/train.yaml --steps 60 --rounds 3

Runs the config's first stage for ``steps`` optimizer steps once per layout (same data, model and
optimizer; no evaluation): packed, padded with random batches, and padded with length-grouped
batches (``packing.group_by_length``, transformers' ``group_by_length``: the padded baseline users
actually run). It reports useful (non-padding) tokens per second: the median over logging windows
after the first, which holds warm-up. With ``rounds`` > 1 the layouts take turns that many times
(a burst of load from other users then hits every layout) and each figure is the median over
rounds, each ratio the median of the rounds' ratios. Padded batches hold ``packing.batch_size``
samples; set it to about the samples one pack holds for a like-for-like comparison. Samples of
one length (nothing to pad) favour padding; long-tailed lengths favour packing.
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


def run(
    config_path: Path, *, steps: int, overrides: list[str], as_json: bool, rounds: int = 1
) -> str:
    from mmgen.train.config import load_config

    # one entry per round: layout -> (tokens/s, useful slots, last loss, logging window)
    results = [{name: _measure(load_config(config_path, [*overrides, *settings]), steps)
                for name, settings in LAYOUTS.items()} for _ in range(rounds)]  # fmt: skip
    rows = []
    for name in LAYOUTS:
        ratios = [statistics.median(r[name][0] / r[base][0] for r in results)
                  for base in ("padded", "padded, length-grouped")]  # fmt: skip
        rows.append([
            name,
            statistics.median(r[name][0] for r in results),
            *ratios,
            statistics.median(r[name][1] for r in results),
            results[-1][name][2],
        ])  # fmt: skip
    columns = ["layout", "tokens/s", "x padded", "x grouped", "useful slots", "last loss"]
    window = f"{results[0]['packed'][3]} steps"
    meta = {"config": str(config_path), "steps": steps, "window": window, "rounds": rounds}
    for base, label in (("padded", "padded"), ("padded, length-grouped", "grouped")):
        per_round = (f"{r['packed'][0] / r[base][0]:.2f}" for r in results)
        meta[f"packed / {label} per round"] = ", ".join(per_round)
    title = "mmgen bench train: packed vs padded (random, length-grouped) training steps"
    return emit(title, columns, rows, as_json=as_json, **meta)


def _measure(config, steps: int) -> tuple[float, float, float, int]:
    """Train ``config`` for ``steps`` steps: tokens/s and useful slots (medians over the logging
    windows after the first), the last logged loss, and the logging window."""
    from mmgen.train.loop import train
    from mmgen.train.metrics import read_metrics

    with tempfile.TemporaryDirectory(prefix="mmgen-bench-") as out:
        _bench_only(config, steps, out)
        with contextlib.redirect_stdout(io.StringIO()):
            train(config)
        records = [r for r in read_metrics(Path(out) / "metrics.jsonl") if r["kind"] == "train"]
    windows = records[1:] or records
    return (
        statistics.median(r["tokens_per_s"] for r in windows),
        statistics.median(r["packing"] for r in windows),
        records[-1]["loss"],
        config.logging.every,
    )


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

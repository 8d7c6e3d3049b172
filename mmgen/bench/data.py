"""``mmgen bench data``: how long a training run's data side takes to start, against N rows.

    mmgen bench data                # 1,000, 10,000 and 100,000 rows (~7-10 min a round on 2 cores)
    mmgen bench data --small        # 200 and 1,000 rows: about a minute
    mmgen bench data -n 5000 --workers 4 --rounds 3 --dir /tmp/bench-data   # keeps the data

Each N gets rows of ``mmgen.bench.data_synthetic`` (real WAV, JPEG and PNG files on disk) and the
processor of the built-in audio and image modalities, and opens its data side three ways, all on
one torch thread (as ``mmgen train`` scans):

- full processing: ``processor.process`` on every row in one process: what opening a dataset did
  before the length index (each item loaded, decoded and turned into features). Above
  ``full_sample`` rows a random sample of that many is timed and the rate extrapolated to N.
- cold metadata scan: ``MultimodalDataset`` over an empty index folder: ``build_index`` measures
  every row (text tokenized in batches, item counts without decoding, every item's header read)
  and writes the index; with 1 worker and with ``workers`` processes. ``build_index`` starts its
  pool only for a scan projected past ``PARALLEL_AFTER_SECONDS``: here it is forced, its start-up
  counted.
- warm start: ``MultimodalDataset`` again over that index folder (fingerprint, the JSONL file's
  line bounds, the index read back); the best of ``WARM_REPEAT``.

All three must agree: every timed row's length and item spans are compared. With ``rounds`` > 1
the three take turns that many times per N (a burst of load from other jobs then hits each) and
each figure is the median over rounds, each ratio the median of the rounds' ratios. The second
table (``mmgen.bench.data_memory``) opens each warm start in a fresh process for its memory and
extrapolates time and memory to 1M rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mmgen.bench import data_memory as memory_table
from mmgen.bench import data_synthetic as synthetic
from mmgen.bench.table import emit

ROWS = (1_000, 10_000, 100_000)
SMALL_ROWS = (200, 1_000)
FULL_SAMPLE = 2_000  # rows full processing times at most (~40 s here); the rest is extrapolated
MEDIA_FILES = 4_096  # distinct files per modality (~0.7 GB of audio, ~0.5 GB of images)
SMALL_MEDIA_FILES = 200
SMALL_FULL_SAMPLE = 200
WARM_REPEAT = 5
TARGETS = {"cold": 50, "warm": 1_000, "seconds": 5.0, "megabytes": 100.0}  # the issue's
STARTUPS = ("full", "cold", "cold_all", "warm")


def run(
    *,
    rows: list[int],
    workers: int,
    full_sample: int,
    media_files: int,
    rounds: int = 1,
    directory: Path | None = None,
    as_json: bool = False,
) -> str:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as mmgen train scans: feature extraction is many tiny torch ops
    sizes = {"rows": sorted(set(rows)), "workers": workers, "full_sample": full_sample,
             "media_files": media_files, "rounds": rounds}  # fmt: skip
    try:
        with _folder(directory) as folder:
            return _tables(folder, as_json=as_json, **sizes)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _folder(directory: Path | None):
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="mmgen-bench-data-") as folder:
        yield Path(folder)


def _tables(
    folder: Path,
    *,
    rows: list[int],
    workers: int,
    full_sample: int,
    media_files: int,
    rounds: int,
    as_json: bool,
) -> str:
    import torch

    load = [os.getloadavg()[0]]
    processor = synthetic.build_processor(folder / "processor")
    pool = min(media_files, max(rows))
    media = synthetic.write_media(folder, pool)
    startup, memory = [], []
    for n in rows:
        path = synthetic.write_rows(folder / f"rows-{n}.jsonl", n, media)
        index_dir = folder / "index" / str(n)
        shutil.rmtree(index_dir, ignore_errors=True)  # a kept --dir starts cold too
        startup.append(_startup(n, path, processor, workers, full_sample, rounds, index_dir))
        kept = index_dir / str(rounds) / "cold-1"  # the last round's index
        memory.append(memory_table.fresh_warm_start(path, folder / "processor", kept))
    load.append(os.getloadavg()[0])
    size = (folder / f"rows-{rows[-1]}.jsonl").stat().st_size / rows[-1]
    meta = {
        "data": f"JSONL rows, ChatML conversations: 40% one <audio>, 40% one <image>, 20% both"
        f" ({size:.0f} B/row); media: {pool} WAV files (16 kHz, 1-10 s) and {pool} images"
        f" (320-1280 px, 3/4 JPEG, 1/4 PNG) on disk, rows take them in turn"
        + (" (rows above that reference files again)" if pool < max(rows) else ""),
        "processor": synthetic.DESCRIPTION,
        "full processing": "processor.process on each row, one process (the scan before the"
        f" length index); above {full_sample} rows a random sample of {full_sample} is timed"
        " ('timed') and its rate extrapolated to all rows",
        "cold metadata scan": "MultimodalDataset over an empty index folder (item headers read,"
        " as by default); with several workers the pool is forced, its start counted",
        "warm start": f"MultimodalDataset over the kept index, best of {WARM_REPEAT}",
        "page cache": "media and JSONL written just before: cold means no index, not a cold disk",
        "checks": "every timed row's length and spans agree: full = cold 1 = cold all = warm",
        "cpu s": "CPU seconds of this process's threads and its finished children (the scan"
        " workers) for all rows; x full cpu: full processing's over this one, a per-core ratio"
        " that other jobs on the machine hardly move",
        "rounds": f"{rounds} (medians; ratios: medians of the rounds' ratios)",
        "machine": f"{os.cpu_count()} cores, one torch thread per process, torch"
        f" {torch.__version__}; load average (1 min) {load[0]:.1f} at start, {load[1]:.1f} at"
        " end",
        "targets": _verdict(startup, memory),
    }
    if rounds > 1:
        meta[f"x full per round at {rows[-1]} rows"] = _per_round(startup[-1])
    columns = ["rows", "startup", "workers", "timed", "s", "rows/s", "x full", "x full/worker",
               "cpu s", "x full cpu"]  # fmt: skip
    first = emit(
        "mmgen bench data: startup of the data side (full processing, cold scan, warm start)",
        columns,
        [line for result in startup for line in _startup_lines(result)],
        as_json=as_json,
        **meta,
    )
    second = emit(
        "mmgen bench data: warm start in a fresh process (memory), extrapolated to 1M rows",
        memory_table.COLUMNS,
        memory_table.lines(memory),
        as_json=as_json,
        measured=memory_table.MEASURED,
        extrapolated=memory_table.note(memory),
    )
    if as_json:
        return json.dumps({"benchmark": "data", "tables": [json.loads(first), json.loads(second)]})
    return f"{first}\n\n{second}"


# -- one N ---------------------------------------------------------------------------------------


def _startup(
    n: int,
    path: Path,
    processor: Any,
    workers: int,
    full_sample: int,
    rounds: int,
    index_dir: Path,
) -> dict[str, Any]:
    """Wall and CPU seconds (``KEY_cpu``) of each startup (``STARTUPS``), one per round."""
    result: dict[str, Any] = {"rows": n, "workers": workers}
    result.update({k: [] for key in STARTUPS for k in (key, f"{key}_cpu")})

    def record(key: str, seconds: tuple[float, float]) -> None:
        result[key].append(seconds[0])
        result[f"{key}_cpu"].append(seconds[1])

    for round_ in range(rounds):
        processed, seconds = _full_processing(n, path, processor, full_sample, seed=round_)
        record("full", seconds)
        result["timed"] = len(processed)
        folder = index_dir / str(round_ + 1)  # each round's scans start cold
        cold, seconds = _open(path, processor, folder / "cold-1")
        record("cold", seconds)
        if len(cold) != n or list(cold.index.rows) != list(range(n)):
            raise RuntimeError(f"the scan kept {len(cold)} of {n} synthetic rows: {cold.report()}")
        _agree(processed, cold)
        if workers > 1:
            with _pool_from_the_start():
                pooled, seconds = _open(path, processor, folder / "cold-all", workers)
            record("cold_all", seconds)
            _same_index(cold, pooled, f"the cold scan with {workers} workers")
            del pooled
        kept = sorted((folder / "cold-1").iterdir())
        warm = []
        for _ in range(WARM_REPEAT):
            again, seconds = _open(path, processor, folder / "cold-1")
            warm.append(seconds)
            _same_index(cold, again, "the warm start")
        if sorted((folder / "cold-1").iterdir()) != kept:
            raise RuntimeError("the warm start built a new index instead of reading the kept one")
        record("warm", min(warm))
        if round_ + 1 < rounds:  # the last round's index stays for the fresh-process warm start
            shutil.rmtree(folder)
    return result


def _full_processing(
    n: int, path: Path, processor: Any, full_sample: int, seed: int
) -> tuple[dict[int, tuple], tuple[float, float]]:
    """Each timed row's (length, spans) from ``processor.process``, and the wall and CPU
    seconds all ``n`` rows take (timed, or extrapolated from a random sample of
    ``full_sample`` rows)."""
    import numpy as np

    from mmgen.data.readers import open_source

    rng = np.random.default_rng([n, seed])
    timed = range(n) if n <= full_sample else sorted(rng.choice(n, full_sample, replace=False))
    start = _clock()
    source = open_source(path)
    processed = {}
    for i in map(int, timed):
        row = source[i]
        sample = processor.process(row.row, origin=row.origin, base_dir=row.base_dir)
        processed[i] = (sample.length, tuple(sample.spans()))
    wall, cpu = _since(start)
    return processed, (wall * n / len(processed), cpu * n / len(processed))


def _open(
    path: Path, processor: Any, folder: Path, workers: int = 1
) -> tuple[Any, tuple[float, float]]:
    from mmgen.data.dataset import MultimodalDataset

    start = _clock()
    dataset = MultimodalDataset(path, processor, index_dir=folder, scan_workers=workers)
    return dataset, _since(start)


def _clock() -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process's threads and its finished children (scan
    workers count once the pool has shut down, which is before the dataset is returned)."""
    import resource

    own, children = (resource.getrusage(who)
                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # fmt: skip
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return time.perf_counter(), cpu


def _since(start: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - start[0], now[1] - start[1]


def _agree(processed: dict[int, tuple], dataset: Any) -> None:
    for i, (length, spans) in processed.items():
        if int(dataset.lengths[i]) != length or dataset.index.spans(i) != spans:
            scanned = f"{int(dataset.lengths[i])} {dataset.index.spans(i)}"
            raise RuntimeError(
                f"row {i}: full processing gives {length} tokens {spans}, the scan {scanned}"
            )


def _same_index(a: Any, b: Any, what: str) -> None:
    import numpy as np

    names = ("rows", "lengths", "offsets", "starts", "ends", "id_bytes", "id_offsets")
    if not all(np.array_equal(getattr(a.index, k), getattr(b.index, k)) for k in names):
        raise RuntimeError(f"{what} gives another index than the cold scan with 1 worker")


@contextlib.contextmanager
def _pool_from_the_start():
    """Workers for every chunk after the first, however quick the scan: ``build_index`` starts
    them only for a scan projected past ``PARALLEL_AFTER_SECONDS`` (restored after)."""
    from mmgen.data import index

    saved = index.PARALLEL_AFTER_SECONDS
    index.PARALLEL_AFTER_SECONDS = 0.0
    try:
        yield
    finally:
        index.PARALLEL_AFTER_SECONDS = saved


def _startup_lines(result: dict[str, Any]) -> list[list[Any]]:
    n, w = result["rows"], result["workers"]
    full, full_cpu = statistics.median(result["full"]), statistics.median(result["full_cpu"])
    lines = [[n, "full processing", 1, result["timed"], full, n / full, 1.0, 1.0, full_cpu, 1.0]]
    for key, label, workers in (("cold", "cold metadata scan", 1),
                                ("cold_all", "cold metadata scan", w),
                                ("warm", "warm start (index)", "-")):  # fmt: skip
        if not result[key]:
            continue
        seconds, ratio = statistics.median(result[key]), _ratio(result, key)
        per_worker = ratio / workers if workers != "-" else "-"
        cpu = statistics.median(result[f"{key}_cpu"])
        lines.append([n, label, workers, n, seconds, n / seconds, ratio, per_worker, cpu,
                      _ratio(result, f"{key}_cpu", "full_cpu")])  # fmt: skip
    return lines


def _ratio(result: dict[str, Any], key: str, full: str = "full") -> float:
    """The median over rounds of full processing's seconds over ``key``'s."""
    pairs = zip(result[full], result[key], strict=True)
    return statistics.median(f / max(s, 1e-9) for f, s in pairs)


def _per_round(result: dict[str, Any]) -> str:
    names = {"cold": "cold 1 worker", "cold_all": f"cold {result['workers']} workers",
             "warm": "warm"}  # fmt: skip
    parts = []
    for key, name in names.items():
        ratios = (f / s for f, s in zip(result["full"], result[key], strict=True))
        if result[key]:
            parts.append(f"{name} " + ", ".join(f"{r:.0f}" for r in ratios))
    return "; ".join(parts)


def _verdict(startup: list[dict[str, Any]], memory: list[dict[str, Any]]) -> str:
    last = startup[-1]
    n, w = last["rows"], last["workers"]
    cpu = _ratio(last, "cold_cpu", "full_cpu")
    parts = [f"at {n} rows: cold 1 worker {_ratio(last, 'cold'):.0f}x full ({cpu:.0f}x in CPU"
             f" seconds; target {TARGETS['cold']}x)"]  # fmt: skip
    if last["cold_all"]:
        pairs = zip(last["cold"], last["cold_all"], strict=True)
        scale = statistics.median(a / b for a, b in pairs)
        cpu = _ratio(last, "cold_all_cpu", "full_cpu")
        parts.append(f"{w} workers {_ratio(last, 'cold_all') / w:.0f}x per worker ({cpu:.0f}x in"
                     f" CPU seconds), {scale:.2f}x one worker")  # fmt: skip
    parts.append(f"warm {_ratio(last, 'warm'):.0f}x full (target {TARGETS['warm']}x)")
    guess = memory_table.extrapolate(memory)
    targets = f"targets {TARGETS['seconds']:g} s, {TARGETS['megabytes']:g} MB"
    if guess["seconds"] is None:
        parts.append(f"1M rows: n/a (largest N below {memory_table.EXTRAPOLATE_FROM})")
    else:
        peak = "n/a" if guess["peak_mb"] is None else f"{guess['peak_mb']:.0f} MB peak RSS"
        peak += f", {guess['heap_peak_mb']:.0f} MB heap peak"
        parts.append(
            f"1M rows (extrapolated): warm {guess['seconds']:.2f} s in a fresh process, {peak}"
            f" ({targets})"
        )
    return "; ".join(parts)

"""The second table of ``mmgen bench data``: a warm start in a fresh process, its time and
memory, and both extrapolated to 1M rows.

A fresh Python process builds the processor, then opens the dataset from the kept index. Its
memory is read from ``/proc/self/status`` (Linux; elsewhere n/a): the peak RSS (VmHWM, reset just
before through ``/proc/self/clear_refs``) and the RSS kept after, both above the process just
before opening. Then it opens the dataset again under ``tracemalloc``: the heap peak (Python
objects and numpy arrays; not the pages of a mapped file, which RSS counts).

1M rows: time, the arrays and the index file follow the line through the two largest N; the
kept memory is the largest N's plus the arrays' growth (per row, a warm start holds only
fixed-width numpy arrays: the index's and the JSONL file's line bounds). The peak RSS is the
larger of two moments: the JSONL line scan (16-MB blocks and their newline masks: the peak at
100k rows, it hardly grows) and the index read, when the kept arrays, the index file's pages
(safetensors maps the file) and the arrays copied out of them are all resident: kept + file.
The heap peak is the larger of the largest N's and the arrays. Below ``EXTRAPOLATE_FROM`` rows
fixed costs dominate: no extrapolation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mmgen.bench import data_synthetic as synthetic

EXTRAPOLATE_TO = 1_000_000
EXTRAPOLATE_FROM = 10_000  # below, fixed costs hide what a row costs
KEYS = ("seconds", "peak_mb", "heap_peak_mb", "kept_mb", "arrays_mb", "file_mb")
COLUMNS = ["rows", "warm s", "peak MB", "heap peak MB", "kept MB", "arrays MB", "index file MB",
           "kept B/row"]  # fmt: skip
MEASURED = (
    "a fresh process builds the processor, then opens the dataset from the index: peak RSS"
    " above the process just before (VmHWM reset through /proc/self/clear_refs), RSS kept"
    " after; heap peak: tracemalloc over a second opening (Python objects and numpy arrays,"
    " not mapped file pages); arrays: the index's and the JSONL line bounds' numpy arrays"
)
_MB = 1 << 20


def fresh_warm_start(path: Path, processor_dir: Path, index_dir: Path) -> dict[str, Any]:
    """``probe`` in a fresh Python process."""
    code = (
        "import json, sys; from mmgen.bench.data_memory import probe;"
        " print(json.dumps(probe(*sys.argv[1:])))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), str(processor_dir), str(index_dir)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"the fresh-process warm start failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe(path: str, processor_dir: str, index_dir: str) -> dict[str, Any]:
    """Open the dataset at ``path`` from the index in ``index_dir``: seconds, peak and kept RSS
    above the process just before, the heap peak, and what its arrays hold."""
    import gc
    import tracemalloc

    import torch

    from mmgen.data.dataset import MultimodalDataset
    from mmgen.data.index import _ARRAYS

    torch.set_num_threads(1)
    processor = synthetic.build_processor(Path(processor_dir))
    kept = sorted(Path(index_dir).iterdir())
    gc.collect()
    before = _status_kb("VmRSS")
    peak_known = before is not None and _reset_peak()
    start = time.perf_counter()
    dataset = MultimodalDataset(path, processor, index_dir=index_dir)
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM") if peak_known else None
    after = _status_kb("VmRSS")
    if sorted(Path(index_dir).iterdir()) != kept:
        raise RuntimeError("the fresh-process warm start built a new index")
    index, source = dataset.index, dataset.source
    arrays = sum(getattr(index, name).nbytes for name in _ARRAYS) + dataset.items.numpy().nbytes
    arrays += sum(getattr(source, name).nbytes for name in ("starts", "ends", "numbers"))
    rows = len(dataset)
    del dataset, index, source
    gc.collect()
    tracemalloc.start()
    again = MultimodalDataset(path, processor, index_dir=index_dir)
    heap_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del again
    files = [p for p in kept if p.suffix == ".safetensors"]
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_mb": None if peak is None else (peak - before) / 1024,
        "heap_peak_mb": heap_peak / _MB,
        "kept_mb": None if after is None else (after - before) / 1024,
        "arrays_mb": arrays / _MB,
        "file_mb": files[0].stat().st_size / _MB,
    }


def _status_kb(field: str) -> int | None:
    """A field of ``/proc/self/status`` in kB; None where there is none (not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where it cannot be."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


# -- 1M rows ---------------------------------------------------------------------------------


def extrapolate(memory: list[dict[str, Any]], n: int = EXTRAPOLATE_TO) -> dict[str, Any]:
    """The probe's figures at ``n`` rows (see the module's docstring); None where the largest
    N is below ``EXTRAPOLATE_FROM`` (fixed costs hide the per-row ones there)."""
    last = memory[-1]
    guess: dict[str, Any] = {"rows": n, **dict.fromkeys(KEYS)}
    if len(memory) < 2 or last["rows"] < EXTRAPOLATE_FROM:
        return guess
    for key in ("seconds", "arrays_mb", "file_mb"):
        guess[key] = _linear(memory, key, n)
    growth = guess["arrays_mb"] - last["arrays_mb"]
    guess["heap_peak_mb"] = max(last["heap_peak_mb"], guess["arrays_mb"])
    if last["kept_mb"] is not None:  # what a warm start keeps grows by its arrays
        guess["kept_mb"] = last["kept_mb"] + growth
    if last["peak_mb"] is not None:
        guess["peak_mb"] = max(last["peak_mb"], guess["kept_mb"] + guess["file_mb"])
    return guess


def _linear(memory: list[dict[str, Any]], key: str, n: int) -> float:
    """``key`` at ``n`` rows on the line through the two largest N (flat if it falls: noise)."""
    (x0, y0), (x1, y1) = [(m["rows"], m[key]) for m in memory[-2:]]
    return y1 + max(0.0, (y1 - y0) / (x1 - x0)) * (n - x1)


def lines(memory: list[dict[str, Any]]) -> list[list[Any]]:
    guess = extrapolate(memory)
    labels = [m["rows"] for m in memory] + [f"{guess['rows']} (extrapolated)"]
    out = []
    for label, m in zip(labels, [*memory, guess], strict=True):
        per_row = None if m["kept_mb"] is None else m["kept_mb"] * _MB / m["rows"]
        out.append([label, *(_cell(m[key]) for key in KEYS), _cell(per_row)])
    return out


def _cell(value: float | None) -> float | str:
    return "n/a" if value is None else value


def note(memory: list[dict[str, Any]]) -> str:
    if len(memory) < 2 or memory[-1]["rows"] < EXTRAPOLATE_FROM:
        return f"n/a: needs two N, the largest at least {EXTRAPOLATE_FROM} rows"
    return (
        "time, arrays, index file: the line through the two largest N; kept: kept at the"
        " largest N plus the arrays' growth (per row a warm start holds only fixed-width numpy"
        " arrays: the index's and the JSONL line bounds'); peak: the larger of the largest N's"
        " (the JSONL line scan's 16-MB blocks, which hardly grow) and kept + the index file"
        " (while the index is read, safetensors maps the file and copies the arrays out); heap"
        " peak: the larger of the largest N's and the arrays"
    )

"""Printing benchmark results: an aligned text table, or JSON with ``--json``."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def time_fn(fn: Callable[[], Any], *, warmup: int = 2, repeat: int = 7) -> float:
    """Median wall time of ``fn()`` in milliseconds (medians resist a busy shared machine)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join(lines)


def emit(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, as_json: bool, **meta
) -> str:
    """The table (or JSON document) for one benchmark run."""
    if as_json:
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        return json.dumps({"benchmark": title, **meta, "rows": records}, indent=2)
    header = title + "".join(f"\n  {k}: {v}" for k, v in meta.items())
    return f"{header}\n\n{format_table(columns, rows)}"

"""``mmgen bench pack``: token-budget packing planners and packed-batch metadata, side by side.

    mmgen bench pack            # N = 1,000,000 samples per length distribution (about a minute)
    mmgen bench pack --small    # N = 20,000: seconds

Table 1, per length distribution, on the same lengths: pad-to-longest batches, Python next-fit,
a pure-Python best-fit decreasing with ``bisect``, TRL's ``pack_dataset(strategy="bfd")`` when
``trl`` is installed (on at most the first 100,000 samples: it needs ~12 GB for 1M), and
``plan_packs`` (bfd, ffd, sequential). Table 2: building
``cu_seqlens``/``position_ids``/``seq_idx`` for every pack of the bfd plan. One thread throughout.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from mmgen.bench import pack_baselines as base
from mmgen.bench.table import emit, time_fn

# name -> (default capacity, numpy sampler); lengths are rounded up and clipped to [1, capacity]
DISTRIBUTIONS: dict[str, tuple[int, Callable]] = {
    "gamma(5, scale 20)": (2048, lambda rng, n: rng.gamma(5.0, 20.0, n)),
    "lognormal(median 600, σ 0.9)": (8192, lambda rng, n: rng.lognormal(math.log(600.0), 0.9, n)),
}
# TRL's packer holds ~12 GB and takes ~50 s per 1M samples here: its row uses at most this many
TRL_MAX_SAMPLES = 100_000
METADATA_PACKS = 256  # packs timed in table 2: ~2M tokens, enough for a stable median


def sample_lengths(name: str, n: int, capacity: int, seed: int = 0):
    import numpy as np
    import torch

    raw = DISTRIBUTIONS[name][1](np.random.default_rng(seed), n)
    return torch.from_numpy(np.clip(np.ceil(raw), 1, capacity).astype(np.int64))


def _measure(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """fn's result and its median time in ms: the first call (which also warms up) is timed
    alone when repeat is 0, for baselines too slow to run again."""
    start = time.perf_counter()
    result = fn()
    once = (time.perf_counter() - start) * 1e3
    return result, time_fn(fn, warmup=0, repeat=repeat) if repeat else once


def plan_rows(name: str, lengths, capacity: int) -> list[list[Any]]:
    """One row per planner: packs, distance to the lower bound, efficiency, speed."""
    from mmgen import ops

    as_list = lengths.tolist()
    n = len(as_list)
    head = min(n, TRL_MAX_SAMPLES)
    totals = {n: sum(as_list), head: sum(as_list[:head])}
    bounds = {k: math.ceil(v / capacity) for k, v in totals.items()}
    results: list[tuple[str, int, float, int]] = []  # (planner, packs, ms, samples)
    (batches, _), ms = _measure(lambda: base.pad_to_longest(as_list, capacity), 3)
    results.append(("pad to longest (Python)", batches, ms, n))
    packs, ms = _measure(lambda: base.python_next_fit(as_list, capacity), 3)
    results.append(("next fit (Python)", packs, ms, n))
    packs, python_ms = _measure(lambda: base.python_bisect_bfd(as_list, capacity), 3)
    results.append(("bfd, bisect (Python)", packs, python_ms, n))
    if base.trl_available():
        base.trl_bfd(base.trl_dataset([1, 2, 3]), capacity)  # warm up: imports, first map
        dataset = base.trl_dataset(as_list[:head])
        packs, ms = _measure(lambda: base.trl_bfd(dataset, capacity), 0)
        label = "trl pack_dataset bfd" + ("" if head == n else f" (first {head})")
        results.append((label, packs, ms, head))
    for strategy in ("bfd", "ffd", "sequential"):
        plan, ms = _measure(lambda s=strategy: ops.plan_packs(lengths, capacity, strategy=s), 7)
        results.append((f"mmgen plan_packs {strategy}", int(plan.max()) + 1, ms, n))
    python_rate = n / python_ms
    return [
        [
            name,
            method,
            packs,
            f"{100 * (packs / bounds[count] - 1):+.3f}%",
            100 * totals[count] / (packs * capacity),
            count / ms / 1e3,  # samples per ms -> million samples per second
            count / ms / python_rate,
        ]
        for method, packs, ms, count in results
    ]


def metadata_rows(lengths, capacity: int) -> list[list[Any]]:
    """Per-pack metadata over the first packs of the bfd plan: ours vs plain torch vs lists."""
    import torch

    from mmgen import ops

    plan = ops.plan_packs(lengths, capacity)
    order = torch.argsort(plan, stable=True)
    counts = torch.bincount(plan).tolist()[:METADATA_PACKS]
    packs = list(torch.split(lengths[order][: sum(counts)], counts))
    pack_lists = [p.tolist() for p in packs]
    tokens = sum(sum(p) for p in pack_lists)

    def plain_torch(p):
        cu = torch.nn.functional.pad(p.cumsum(0), (1, 0)).to(torch.int32)
        seq_idx = torch.repeat_interleave(torch.arange(len(p), dtype=torch.int32), p)
        position_ids = torch.arange(int(cu[-1])) - cu[:-1].long().repeat_interleave(p)
        return cu, position_ids, seq_idx, int(p.max())

    def python_lists(p):  # HF DataCollatorWithFlattening-style list comprehensions
        cu = [0]
        for length in p:
            cu.append(cu[-1] + length)
        position_ids = [i for length in p for i in range(length)]
        seq_idx = [s for s, length in enumerate(p) for _ in range(length)]
        return (torch.tensor(cu, dtype=torch.int32), torch.tensor(position_ids),
                torch.tensor(seq_idx, dtype=torch.int32), max(p))  # fmt: skip

    ours, reference = ops.varlen_metadata(packs[0]), plain_torch(packs[0])
    assert all(torch.equal(a, b) for a, b in zip(ours[:3], reference[:3], strict=True))
    candidates = [
        ("python lists (HF flattening collator)", lambda: [python_lists(p) for p in pack_lists]),
        ("plain torch ops", lambda: [plain_torch(p) for p in packs]),
        ("mmgen varlen_metadata", lambda: [ops.varlen_metadata(p) for p in packs]),
    ]
    timings = [(label, time_fn(fn, warmup=1, repeat=5)) for label, fn in candidates]
    slowest = timings[0][1]
    return [[label, round(tokens / ms / 1e3, 1), round(slowest / ms, 1)] for label, ms in timings]


def run(*, num_samples: int, capacity: int | None = None, as_json: bool = False) -> str:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the targets are single-threaded; metadata uses one thread too
    try:
        return _tables(num_samples, capacity, as_json)
    finally:
        torch.set_num_threads(threads)


def _tables(num_samples: int, capacity: int | None, as_json: bool) -> str:
    plan_table, last = [], None
    for name, (default_capacity, _) in DISTRIBUTIONS.items():
        cap = capacity or default_capacity
        last = (sample_lengths(name, num_samples, cap), cap)
        plan_table += plan_rows(name, *last)
    meta = {"samples": num_samples, "threads": 1, "efficiency": "ΣL / (packs × capacity)"}
    if capacity:
        meta["capacity"] = capacity
    else:
        meta["capacity"] = ", ".join(f"{n}: {c}" for n, (c, _) in DISTRIBUTIONS.items())
    if not base.trl_available():
        meta["trl"] = "not installed (pip install trl to add its row)"
    columns = ["lengths", "planner", "packs", "vs bound", "eff %", "M seq/s", "x python bfd"]
    first = emit("pack: planning", columns, plan_table, as_json=as_json, **meta)
    meta_columns = ["metadata per pack", "M tok/s", "x python lists"]
    second = emit(
        "pack: packed metadata (cu_seqlens, position_ids, seq_idx)",
        meta_columns,
        metadata_rows(*last),
        as_json=as_json,
        packs=f"first {METADATA_PACKS} of the bfd plan on the last distribution",
        threads=1,
    )
    if as_json:
        return json.dumps({"benchmark": "pack", "tables": [json.loads(first), json.loads(second)]})
    return f"{first}\n\n{second}"

"""What trainers commonly do instead of ``plan_packs``: the baselines of ``mmgen bench pack``.

Each planner takes plain Python lengths and a token budget and returns the number of batches
(packs) it makes; every batch costs ``capacity`` tokens of compute at most.
"""

from __future__ import annotations

import bisect


def pad_to_longest(lengths: list[int], capacity: int) -> tuple[int, int]:
    """Dataset-order batches padded to their longest sample, under a token budget
    (batch size x longest <= capacity, as fairseq's ``max_tokens``). Returns (batches, padded
    tokens): padding costs compute, so its efficiency is ΣL / padded tokens."""
    batches, padded, count, longest = 0, 0, 0, 0
    for length in lengths:
        widest = max(longest, length)
        if count and (count + 1) * widest > capacity:
            padded += count * longest
            batches, count, widest = batches + 1, 0, length
        count, longest = count + 1, widest
    if count:
        padded += count * longest
        batches += 1
    return batches, padded


def python_next_fit(lengths: list[int], capacity: int) -> int:
    """Sequential packing in dataset order: a new pack whenever the next sample does not fit."""
    packs, room = 0, -1
    for length in lengths:
        if length > room:
            packs, room = packs + 1, capacity
        room -= length
    return packs


def python_bisect_bfd(lengths: list[int], capacity: int) -> int:
    """Best-fit decreasing over a sorted list of (room, pack) with ``bisect``: the usual
    pure-Python packer in training scripts. O(N log P) search, O(P) list inserts."""
    rooms: list[tuple[int, int]] = []
    packs = 0
    for length in sorted(lengths, reverse=True):
        j = bisect.bisect_left(rooms, (length, -1))
        if j == len(rooms):
            room, pack = capacity, packs
            packs += 1
        else:
            room, pack = rooms.pop(j)
        if room - length > 0:
            bisect.insort(rooms, (room - length, pack))
    return packs


def trl_available() -> bool:
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def trl_dataset(lengths: list[int]):
    """A ``datasets.Dataset`` with one ``input_ids`` list per sample (int8 zeros: TRL reads
    only the list lengths, and small values keep 10^8+ tokens in memory cheaply)."""
    import datasets
    import numpy as np
    import pyarrow as pa
    from datasets.table import InMemoryTable

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = pa.array(np.zeros(int(offsets[-1]), dtype=np.int8))
    column = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    datasets.disable_progress_bars()
    return datasets.Dataset(InMemoryTable(pa.Table.from_arrays([column], ["input_ids"])))


def trl_bfd(dataset, capacity: int) -> int:
    """TRL's ``pack_dataset(strategy="bfd")``, given the whole dataset as one map batch so that
    it packs globally (its default map batch of 1000 samples packs each batch on its own)."""
    from trl import pack_dataset

    kwargs = {"batch_size": len(dataset), "keep_in_memory": True, "load_from_cache_file": False}
    return len(pack_dataset(dataset, capacity, strategy="bfd", map_kwargs=kwargs))

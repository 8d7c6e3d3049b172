"""The length index of a dataset: what packing and loading need of every row, measured once and
kept on disk.

Packing needs every sample's length before the first batch. ``build_index`` measures each row
with ``MultimodalProcessor.measure`` — text tokenized in batches, item counts from the modality
processors' ``count`` (no media decoded where a processor can count), processing only where it
cannot — over ``workers`` processes. Per kept row it keeps the row's position in the source, its
length and its items' spans; per dropped row why (``on_error: skip``).

``load_or_build`` keeps the index in ``<cache>/index/<fingerprint>.safetensors``: the cache is
``$MMGEN_CACHE`` (default ``~/.cache/mmgen``), the fingerprint hashes everything the lengths
depend on (the data files' paths, sizes and mtimes; the tokenizer and chat template; every
modality's processor code, config and loader; truncation). Any change makes a new
fingerprint. The file is written to a temp name and renamed; one that does not read back whole is
rebuilt, never trusted. Processes of one run (ranks, ``mmgen data check``) share it: one builds
it under a lock while the others wait, then they read it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import inspect
import itertools
import json
import multiprocessing
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.data.sample import SampleSize
from mmgen.data.skips import SkipLog, reason_of
from mmgen.errors import DataError

FORMAT = "mmgen-data-index"
_ARRAYS = ("rows", "lengths", "offsets", "starts", "ends", "kinds", "targets", "full_lengths",
           "id_bytes", "id_offsets", "dropped", "problem_bytes", "problem_offsets")  # fmt: skip
VERSION = 2  # bump when what is measured, or how, changes: old indexes are then rebuilt
CHUNK = 512  # rows per tokenizer call and per unit of work for a scan worker
PARALLEL_AFTER_SECONDS = 10.0  # a scan projected to take longer than this starts its workers


@dataclass
class DataIndex:
    """What the scan found. Kept sample ``i`` is row ``rows[i]`` of the source, ``lengths[i]``
    tokens long (``full_lengths[i]`` before truncation), with ``targets[i]`` tokens the loss
    learns; its items' spans are ``starts/ends[offsets[i]:offsets[i + 1]]`` and their modalities
    ``modalities[kinds[...]]``. Dropped rows (``on_error: skip``) are ``dropped``, each with its
    problem (``problems()``: the reason and the error's message); ``skipped`` counts them."""

    rows: np.ndarray  # int64 (N,)
    lengths: np.ndarray  # int64 (N,)
    offsets: np.ndarray  # int64 (N + 1,)
    starts: np.ndarray  # int32 (sum of items,)
    ends: np.ndarray  # int32 (sum of items,)
    kinds: np.ndarray  # uint8 (sum of items,): position in ``modalities``
    targets: np.ndarray  # int32 (N,)
    full_lengths: np.ndarray  # int32 (N,)
    id_bytes: np.ndarray  # uint8: the kept samples' ids, UTF-8, end to end
    id_offsets: np.ndarray  # int64 (N + 1,)
    dropped: np.ndarray  # int64 (D,): source positions of the rows left out
    problem_bytes: np.ndarray  # uint8: "reason\tmessage" of each dropped row, UTF-8
    problem_offsets: np.ndarray  # int64 (D + 1,)
    modalities: list[str]
    total: int  # rows in the source
    skipped: SkipLog

    @property
    def items(self) -> np.ndarray:
        return np.diff(self.offsets)

    def ids(self) -> list[str]:
        return _strings(self.id_bytes, self.id_offsets)

    def problems(self) -> list[tuple[int, str, str]]:
        """``(source position, reason, message)`` of each dropped row, in source order."""
        texts = _strings(self.problem_bytes, self.problem_offsets)
        split = [text.split("\t", 1) for text in texts]
        return [(int(r), *pair) for r, pair in zip(self.dropped.tolist(), split, strict=True)]

    def spans(self, index: int) -> tuple[tuple[int, int], ...]:
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        return tuple(zip(self.starts[a:b].tolist(), self.ends[a:b].tolist(), strict=True))

    @classmethod
    def from_sizes(
        cls,
        rows: list[int],
        sizes: list[SampleSize],
        total: int,
        skipped: SkipLog,
        *,
        modalities: Sequence[str] = (),
        problems: Sequence[tuple[int, str, str]] = (),
    ) -> DataIndex:
        counts = [len(size.spans) for size in sizes]
        flat = [span for size in sizes for span in size.spans]
        kind = {name: k for k, name in enumerate(modalities)}
        ids, ids_at = _blob(size.id for size in sizes)
        texts, texts_at = _blob(f"{reason}\t{message}" for _, reason, message in problems)
        return cls(
            rows=np.asarray(rows, dtype=np.int64),
            lengths=np.asarray([size.length for size in sizes], dtype=np.int64),
            offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
            starts=np.asarray([a for a, _ in flat], dtype=np.int32),
            ends=np.asarray([b for _, b in flat], dtype=np.int32),
            kinds=np.asarray([kind[n] for s in sizes for n in s.modalities], dtype=np.uint8),
            targets=np.asarray([size.targets for size in sizes], dtype=np.int32),
            full_lengths=np.asarray([size.full_length for size in sizes], dtype=np.int32),
            id_bytes=ids,
            id_offsets=ids_at,
            dropped=np.asarray([position for position, _, _ in problems], dtype=np.int64),
            problem_bytes=texts,
            problem_offsets=texts_at,
            modalities=list(modalities),
            total=total,
            skipped=skipped,
        )


def _blob(texts: Iterator[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings end to end as UTF-8 bytes, and where each starts (``(N + 1,)`` offsets)."""
    encoded = [text.encode() for text in texts]
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return data, np.concatenate([[0], ends]).astype(np.int64)


def _strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    blob = data.tobytes()
    return [blob[a:b].decode() for a, b in itertools.pairwise(offsets.tolist())]


# -- building ------------------------------------------------------------------------------------


def build_index(
    source: Sequence[Any],
    processor: Any,
    *,
    on_error: str,
    skipped: SkipLog,
    workers: int = 1,
    headers: bool = True,
    progress: bool = False,
) -> DataIndex:
    """Measure every row of ``source`` (``SourceRow``s); bad rows raise, or are counted in
    ``skipped`` (which may already hold the reader's skips, e.g. malformed lines). ``headers``:
    see ``MultimodalProcessor.measure``."""
    chunks = [range(i, min(i + CHUNK, len(source)), 1) for i in range(0, len(source), CHUNK)]
    rows: list[int] = []
    sizes: list[SampleSize] = []
    problems: list[tuple[int, str, str]] = []
    bar = _progress(len(source), progress)

    def keep(chunk: range, measured: list[SampleSize | DataError]) -> None:
        for position, size in zip(chunk, measured, strict=True):
            if isinstance(size, DataError):
                if on_error == "raise":
                    raise size
                skipped.add(reason_of(size), size)
                problems.append((position, reason_of(size), str(size)))
                continue
            rows.append(position)
            sizes.append(size)
        bar.update(len(chunk))

    # the first chunk here: when it shows the rest would take a while, workers share the rest
    # (starting them costs seconds, more than a quick scan takes: counted items need no media)
    start = time.perf_counter()
    payloads = _payloads(source, chunks)
    if chunks:
        keep(chunks[0], _measure_chunk(processor, next(payloads), headers))
    remaining = (time.perf_counter() - start) * (len(chunks) - 1)
    workers = workers if remaining > PARALLEL_AFTER_SECONDS else 1
    with _measurer(processor, workers, headers) as measure:
        for chunk, measured in zip(chunks[1:], measure(payloads), strict=True):
            keep(chunk, measured)
    bar.close()
    return DataIndex.from_sizes(
        rows, sizes, len(source), skipped, modalities=processor.names, problems=problems
    )


def _payloads(source: Sequence[Any], chunks: list[range]) -> Iterator[list[tuple | DataError]]:
    """Each chunk's rows as ``(row, origin, base_dir)``, or the error of a row that cannot be
    read (a corrupt parquet row group)."""
    for chunk in chunks:
        entries: list[tuple | DataError] = []
        for i in chunk:
            try:
                r = source[i]
            except DataError as error:
                entries.append(error)
                continue
            entries.append((r.row, r.origin, str(r.base_dir) if r.base_dir else None))
        yield entries


def _measure_chunk(
    processor: Any, entries: list[tuple | DataError], headers: bool
) -> list[SampleSize | DataError]:
    readable = [entry for entry in entries if not isinstance(entry, DataError)]
    measured = iter(processor.measure(readable, headers=headers))
    return [entry if isinstance(entry, DataError) else next(measured) for entry in entries]


@contextlib.contextmanager
def _measurer(processor: Any, workers: int, headers: bool):
    """``measure(payloads) -> iterator of results``, in order: in this process, or in
    ``workers`` processes (spawned: a forked copy of a process holding CUDA or tokenizer threads
    can hang), each given the processor once, with a bounded number of chunks in flight. A
    worker that cannot start (a processor that does not pickle) is an error, never a hang."""
    if workers <= 1:
        yield lambda payloads: (_measure_chunk(processor, p, headers) for p in payloads)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:  # the processor travels to every worker: find out now if it cannot
        pickle.dumps(processor)
    except Exception as exc:
        raise DataError(
            f"the scan's workers cannot be given this processor ({type(exc).__name__}: {exc});"
            " set data.scan_workers: 1"
        ) from None
    context = multiprocessing.get_context("spawn")
    # each worker takes the processor from a queue once it runs: handed over the start-up pipe,
    # a large one blocks this process (which holds the pipe's other end) when a worker dies
    # while starting, instead of failing the pool
    handoff = context.Queue()
    for _ in range(workers):
        handoff.put(processor)
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_install, initargs=(handoff, headers)
    )

    def measure(payloads):
        pending: collections.deque = collections.deque()
        try:
            for payload in payloads:
                pending.append(pool.submit(_measure_in_worker, payload))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as exc:
            raise DataError(
                f"the scan's worker processes failed to start ({exc}); set data.scan_workers: 1"
                " (the processor may not pickle, or a worker ran out of memory)"
            ) from None

    try:
        yield measure
    finally:
        pool.shutdown(cancel_futures=True)
        handoff.cancel_join_thread()  # copies a dead worker never took are dropped
        handoff.close()


_WORKER: dict[str, Any] = {}


def _install(handoff: Any, headers: bool) -> None:
    torch.set_num_threads(1)  # one core per worker: the pool is the parallelism
    _WORKER.update(processor=handoff.get(), headers=headers)


def _measure_in_worker(payload: list[tuple | DataError]) -> list[SampleSize | DataError]:
    return _measure_chunk(_WORKER["processor"], payload, _WORKER["headers"])


class _progress:
    """A tqdm bar with rows/s and ETA when asked for and stderr is a terminal; else silent."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            import sys

            from tqdm.auto import tqdm

            if sys.stderr.isatty():
                self._bar = tqdm(total=total, unit="row", desc="measuring rows", leave=False)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# -- the cache -----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$MMGEN_CACHE``, else ``$XDG_CACHE_HOME/mmgen``, else ``~/.cache/mmgen``."""
    if os.environ.get("MMGEN_CACHE"):
        return Path(os.environ["MMGEN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmgen"


def fingerprint(
    data: Any,
    processor: Any,
    *,
    split: str | None,
    base_dir: Any = None,
    headers: bool = True,
) -> str | None:
    """A hash of everything the index of ``data`` depends on; None for data without files to
    fingerprint (a list of dicts): its index is not kept. ``on_error`` is not part of it: an
    index keeps its dropped rows' problems, so a run that raises on bad rows reads one built
    while skipping them (by ``mmgen data check``) and raises the first."""
    files = _data_files(data)
    if files is None:
        return None
    described = {
        "format": FORMAT,
        "version": VERSION,
        "files": files,
        "split": split,
        "base_dir": str(base_dir) if base_dir is not None else None,
        "headers": headers,
        "processor": {k: v for k, v in processor.to_dict().items() if k != "on_error"},
        "tokenizer": _tokenizer_hash(processor.tokenizer),
        "template": processor.template,
        "modalities": {name: _modality(processor, name) for name in processor.processors},
    }
    text = json.dumps(described, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_or_build(key: str | None, build, *, folder: Path | None = None) -> DataIndex:
    """The index kept under ``key`` when it reads back whole, else ``build()``'s, kept. One
    process builds while the others wait on the lock; ``key`` None: built, not kept."""
    if key is None:
        return build()
    folder = folder or cache_dir() / "index"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.safetensors"
    with _locked(folder / f"{key}.lock"):
        index = read_index(path)
        if index is None:
            index = build()
            write_index(index, path)
    return index


def write_index(index: DataIndex, path: Path) -> None:
    from safetensors.numpy import save_file

    tensors = {name: getattr(index, name) for name in _ARRAYS}
    skipped = {
        "reasons": dict(index.skipped.reasons),
        "examples": index.skipped.examples,
        "firsts": index.skipped.firsts,
    }
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "total": str(index.total),
        "skipped": json.dumps(skipped),
        "modalities": json.dumps(index.modalities),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_index(path: Path) -> DataIndex | None:
    """The index at ``path``, or None when there is none or it does not read back whole."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT or metadata.get("version") != str(VERSION):
                return None
            arrays = {name: handle.get_tensor(name) for name in _ARRAYS}
        skipped = SkipLog()
        record = json.loads(metadata["skipped"])
        skipped.reasons.update(record["reasons"])
        skipped.examples[:] = record["examples"]
        skipped.firsts.update(record.get("firsts", {}))
        modalities = json.loads(metadata["modalities"])
        index = DataIndex(
            total=int(metadata["total"]), skipped=skipped, modalities=modalities, **arrays
        )
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        return None
    return index if _consistent(index) else None


def _consistent(index: DataIndex) -> bool:
    n = len(index.rows)
    return (
        len(index.lengths) == n
        and len(index.offsets) == n + 1
        and int(index.offsets[0]) == 0
        and len(index.starts) == len(index.ends) == len(index.kinds) == int(index.offsets[-1])
        and len(index.targets) == len(index.full_lengths) == n
        and len(index.problem_offsets) == len(index.dropped) + 1
        and int(index.problem_offsets[-1]) == len(index.problem_bytes)
        and bool(np.all(index.kinds < max(len(index.modalities), 1)))
        and len(index.id_offsets) == n + 1
        and int(index.id_offsets[-1]) == len(index.id_bytes)
        and bool(np.all(np.diff(index.offsets) >= 0))
        and bool(np.all((index.rows >= 0) & (index.rows < max(index.total, 1))))
        and bool(np.all(index.lengths > 0))
    )


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits while another process builds
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _data_files(data: Any) -> list[tuple[str, int, int]] | None:
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).resolve()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    found = getattr(data, "_fingerprint", None)  # a datasets.Dataset in memory
    return [("datasets", found, 0)] if isinstance(found, str) else None


def _modality(processor: Any, name: str) -> dict[str, Any]:
    """What a modality's counts depend on: its processor's code and config, and its loader."""
    counting, loader = processor.processors[name], processor.loaders[name]
    return {
        "class": f"{type(counting).__module__}.{type(counting).__qualname__}",
        "code": _code_hash(type(counting)),
        "config": _config_dict(counting),
        "loader": [type(loader).__qualname__, _code_hash(type(loader)), loader.options],
    }


def _tokenizer_hash(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab())
    special = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True)
    return hashlib.sha256((text + special).encode()).hexdigest()


def _code_hash(cls: type) -> str:
    """The source of the module defining ``cls`` (a user's edited processor counts otherwise)."""
    try:
        source = inspect.getsource(inspect.getmodule(cls))
    except (OSError, TypeError):
        return cls.__qualname__
    return hashlib.sha256(source.encode()).hexdigest()


def _config_dict(processor: Any) -> Any:
    config = getattr(processor, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else repr(config)

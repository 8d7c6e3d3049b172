"""``mmgen data check``: every row of a run's data checked by the code training uses, before
the run spends an hour on it.

The run's ``MultimodalProcessor`` is built as training builds it, without loading the LLM's
weights (``build.data_processor``: its width comes from its config). Each split is measured into
the same length index a run reads (``mmgen.data.dataset.open_indexed``, the run's fingerprint):
bad rows are skipped rather than raised, so every one is reported, and training then starts from
the index the check left. What is reported:

- each problem as ``file:line: what``: rows the run would stop on or skip (missing or unreadable
  media, placeholders that do not match items, malformed lines), samples longer than the
  packing budget (``packing.overlong``) or cut by ``data.max_length``, samples with nothing to
  learn, held-out rows without a reference answer;
- per split, a histogram of tokens per sample and, per modality, of embeddings per item;
- the projected packing of an epoch at the configured capacity: packs, how full, steps per rank.

``DataCheck.failed`` is true when a run would stop: a bad row under ``on_error: raise``, an
over-long sample under ``overlong: error``, or a training split with nothing to learn.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmgen.errors import DataError
from mmgen.train import build
from mmgen.train.config import TrainConfig

BAR = 32  # histogram bar width in characters
FEW_TARGETS = 3  # samples learning this few tokens are looked at: is their answer empty?


@dataclass(frozen=True)
class Problem:
    origin: str  # file:line (file[index] for rows without lines)
    message: str
    level: Literal["error", "skipped", "warning"]  # the run stops / leaves it out / changes it

    @property
    def fatal(self) -> bool:
        return self.level == "error"


@dataclass
class SourceCheck:
    """One data file of a split (a mixture's train split has several)."""

    split: str  # "train", "train[name]" for a mixture source, "eval", "test"
    path: Path
    total: int
    index: Any  # mmgen.data.index.DataIndex
    problems: list[Problem] = field(default_factory=list)


@dataclass
class DataCheck:
    config: TrainConfig
    sources: list[SourceCheck]
    packing: list[str]  # the projected epoch, or why there is none
    notes: list[Problem] = field(default_factory=list)  # split-level problems

    @property
    def problems(self) -> list[Problem]:
        return [p for source in self.sources for p in source.problems] + self.notes

    @property
    def failed(self) -> bool:
        return any(problem.fatal for problem in self.problems)


def check_data(config: TrainConfig, *, world_size: int = 1) -> DataCheck:
    """Measure every split of ``config`` (building or reusing its index) and collect what a run
    would meet; ``world_size`` ranks share the projected epoch."""
    build.register_project(config)
    tokenizer = build.load_tokenizer(config)
    processor = build.data_processor(config, tokenizer)
    sources = []
    for split in ("train", "eval", "test"):
        value = getattr(config.data, split)
        if value is None:
            continue
        if isinstance(value, str):
            sources.append(_check_source(config, processor, split, split, value))
            continue
        for i, section in enumerate(value):
            where = (split, i, "path")
            path = build.existing_path(config, section.path, "data", *where)
            sources.append(_check_source(config, processor, split, f"{split}[{section.label}]",
                                         path))  # fmt: skip
    notes = []
    train = [s for s in sources if s.split.startswith("train")]
    if sum(int(s.index.targets.sum()) for s in train) == 0:
        where = config.where("data", "train")
        notes.append(
            Problem(where, "no sample has tokens to learn (no assistant answers)", "error")
        )
    return DataCheck(config, sources, _packing(config, processor, world_size), notes)


def _check_source(
    config: TrainConfig, processor: Any, split: str, name: str, value: str | Path
) -> SourceCheck:
    from mmgen.data.dataset import open_indexed

    path = value if isinstance(value, Path) else build.data_path(config, split)
    data = config.data
    workers = data.scan_workers or len(os.sched_getaffinity(0))
    with build.one_thread():
        source, index = open_indexed(
            path, processor, on_error="skip", index=data.index, scan_workers=workers,
            scan_headers=data.scan_headers, progress=True, media_root=build.media_root(config),
        )  # fmt: skip
    checked = SourceCheck(name, path, len(source), index)
    level = "error" if data.on_error == "raise" else "skipped"
    for row, _reason, message in index.problems():
        checked.problems.append(Problem(source.origin(row), _detail(message), level))
    checked.problems += _sample_problems(config, source, index, split)
    if split == "test":
        checked.problems += _reference_problems(processor, source, index, level)
    checked.problems.sort(key=lambda p: _order(p.origin))
    return checked


def _sample_problems(config: TrainConfig, source: Any, index: Any, split: str) -> list[Problem]:
    """Kept samples a run changes or leaves out: cut, over the packing budget, nothing to
    learn."""
    found = []
    data, packing = config.data, config.packing
    items = index.items
    cut = np.flatnonzero(index.full_lengths > index.lengths)
    for i in cut.tolist():
        message = (f"{int(index.full_lengths[i])} tokens, cut to {int(index.lengths[i])}"
                   f" (data.max_length={data.max_length}, truncation: shorten)")  # fmt: skip
        found.append(Problem(source.origin(int(index.rows[i])), message, "warning"))
    if packing.layout == "packed" and split != "test":
        over = index.lengths > packing.capacity
        if packing.max_items is not None:
            over |= items > packing.max_items
        fate = {"error": "a run stops on it", "drop": "left out of packing",
                "truncate": "cut to fit"}[packing.overlong]  # fmt: skip
        over_level = {"error": "error", "drop": "skipped", "truncate": "warning"}[packing.overlong]
        for i in np.flatnonzero(over).tolist():
            budget = f"packing.capacity={packing.capacity}"
            if packing.max_items is not None:
                budget += f", max_items={packing.max_items}"
            message = (f"{int(index.lengths[i])} tokens, {_n(int(items[i]), 'item')}: over {budget}"
                       f" ({fate}: packing.overlong is {packing.overlong})")  # fmt: skip
            found.append(Problem(source.origin(int(index.rows[i])), message, over_level))
    if split != "test":  # a held-out row's answer is its reference, checked separately
        # few learnt tokens: an end-of-turn token alone, or nothing: is any answer there?
        for i in np.flatnonzero(index.targets <= FEW_TARGETS).tolist():
            row = int(index.rows[i])
            if not index.targets[i] or not _answered(source, row, index.modalities):
                message = "no answer to learn: every assistant turn is empty (or was cut off)"
                found.append(Problem(source.origin(row), message, "warning"))
    return found


def _answered(source: Any, row: int, names: list[str]) -> bool:
    from mmgen.data.rows import parse_row

    read = source[row]
    parsed = parse_row(read.row, names=names, origin=read.origin)
    if parsed.turns is None:  # a plain text row: all of it is learnt
        return True
    return any(t.role == "assistant" and str(t.content).strip() for t in parsed.turns)


def _reference_problems(processor: Any, source: Any, index: Any, level: str) -> list[Problem]:
    """Held-out rows need a final assistant turn: the answer generation is compared with."""
    from mmgen.train.evaluate import reference_answer

    found = []
    for row in index.rows.tolist():
        try:
            reference_answer(processor, source[row])
        except DataError as error:
            found.append(Problem(source.origin(row), _detail(str(error)), level))
    return found


def _packing(config: TrainConfig, processor: Any, world_size: int) -> list[str]:
    """The first epoch's packing (or padded batches) as the run would plan it."""
    from mmgen.data.sampler import PaddedBatchSampler, TokenBudgetSampler

    packing = config.packing
    try:
        with build.one_thread():
            train = build.load_split(config, processor, "train", on_error="skip")
    except DataError as error:  # nothing usable, or a mixture source with no samples
        return [f"no projection: {error}"]
    ranks = _n(world_size, "rank")
    if packing.layout == "padded":
        sampler = PaddedBatchSampler(
            train, packing.batch_size, shuffle=True, seed=config.seed, num_replicas=world_size,
            rank=0, group_by_length=packing.group_by_length,
        )  # fmt: skip
        sampler.set_epoch(0)
        batches = list(sampler)
        lengths = train.lengths.numpy()
        real = sum(int(lengths[b].sum()) for b in batches)
        slots = sum(len(b) * int(lengths[b].max()) for b in batches)
        grouped = ", grouped by length" if packing.group_by_length else ""
        return [
            f"padded batches of {packing.batch_size}{grouped}, {ranks}: {_n(len(batches), 'step')}"
            f" per epoch per rank, {real / max(slots, 1):.1%} of computed tokens are real"
        ]
    overlong = "drop" if packing.overlong == "error" else packing.overlong  # reported above
    sampler = TokenBudgetSampler(
        train, packing.capacity, max_items=packing.max_items, strategy=packing.strategy,
        overlong=overlong, packs_per_batch=packing.packs_per_batch, shuffle=True,
        seed=config.seed, num_replicas=world_size, rank=0,
    )  # fmt: skip
    stats = sampler.stats(0)
    lines = [
        f"{_n(stats['packs'], 'pack')} of <= {packing.capacity:,} tokens ({packing.strategy}) per"
        f" epoch, {stats['efficiency']:.1%} full; {_n(stats['steps'], 'step')} per epoch per"
        f" rank ({_n(world_size, 'rank')}, {_n(packing.packs_per_batch, 'pack')} per step)"
    ]
    if stats["dropped"] or stats["truncated"]:
        lines.append(f"over-long samples: {stats['dropped']:,} dropped, {stats['truncated']:,} cut")
    return lines


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


# -- the report ----------------------------------------------------------------------------------


def render(check: DataCheck, *, limit: int | None = 50) -> str:
    """The report: problems (the first ``limit``; None: all), then each split, then packing."""
    lines: list[str] = []
    problems = check.problems
    shown = problems if limit is None else problems[:limit]
    for problem in shown:
        lines.append(f"{_relative(problem.origin)}: {problem.level}: {problem.message}")
    if len(shown) < len(problems):
        lines.append(f"... {len(problems) - len(shown):,} more (--all lists every one)")
    if lines:
        lines.append("")
    for source in check.sources:
        lines += _source_lines(check.config, source)
        lines.append("")
    lines += ["packing: " + check.packing[0], *("  " + line for line in check.packing[1:])]
    errors, skipped, warnings = (sum(p.level == level for p in problems)
                                 for level in ("error", "skipped", "warning"))  # fmt: skip
    parts = [f"{_n(errors, 'error')} (a run stops)" if errors else "",
             f"{skipped:,} left out" if skipped else "",
             _n(warnings, "warning") if warnings else ""]  # fmt: skip
    summary = _n(len(problems), "problem")
    if problems:
        summary += ": " + ", ".join(part for part in parts if part)
    if errors and check.config.data.on_error == "raise":
        summary += "; data.on_error: skip would leave bad rows out"
    lines += ["", summary]
    return "\n".join(lines)


def _source_lines(config: TrainConfig, source: SourceCheck) -> list[str]:
    index = source.index
    kept, total = len(index.rows), source.total
    head = f"{source.split}: {_relative(str(source.path))}: {kept:,} of {total:,} rows kept"
    if index.skipped.count:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(index.skipped.reasons.items()))
        head += f" ({reasons})"
    lines = [head]
    if not kept:
        return lines
    lengths = index.lengths
    tokens = int(lengths.sum())
    lines.append(f"  tokens per sample: {_summary(lengths)}, {tokens:,} in all, "
                 f"{int(index.targets.sum()) / tokens:.1%} learnt")  # fmt: skip
    lines += ["    " + line for line in histogram(lengths)]
    sizes = index.ends.astype(np.int64) - index.starts
    for k, name in enumerate(index.modalities):
        mine = sizes[index.kinds == k]
        if not len(mine):
            continue
        share = int(mine.sum()) / tokens
        lines.append(f"  {name}: {_n(len(mine), 'item')} ({len(mine) / kept:.2g} per sample),"
                     f" {share:.1%} of tokens")  # fmt: skip
        lines.append(f"  {name} embeddings per item: {_summary(mine)}")
        lines += ["    " + line for line in histogram(mine)]
    return lines


def _summary(values: np.ndarray) -> str:
    p50, p95 = np.percentile(values, [50, 95])
    return (f"min {int(values.min()):,}, median {p50:,.0f}, p95 {p95:,.0f}, "
            f"max {int(values.max()):,}")  # fmt: skip


def histogram(values: np.ndarray) -> list[str]:
    """Counts in power-of-two bins (``16-31``), one line each, with a bar."""
    values = np.asarray(values, dtype=np.int64)
    if not len(values):
        return []
    bins = np.floor(np.log2(np.maximum(values, 1))).astype(np.int64)
    low, high = int(bins.min()), int(bins.max())
    counts = np.bincount(bins - low, minlength=high - low + 1)
    labels = [f"{2**b:,}-{2 ** (b + 1) - 1:,}" for b in range(low, high + 1)]
    width = max(len(label) for label in labels)
    top = int(counts.max())
    lines = []
    for label, count in zip(labels, counts.tolist(), strict=True):
        bar = "█" * math.ceil(BAR * count / top) if count else ""
        lines.append(f"{label.rjust(width)}  {bar.ljust(BAR)}  {count:,}")
    return lines


def _detail(message: str) -> str:
    """An error's message without the ``sample 'id' (file:line): `` or ``file:line: `` prefix
    the report already starts with."""
    if message.startswith("sample "):
        cut = message.find("): ")
        if cut != -1:
            return message[cut + 3 :]
    head, sep, rest = message.partition(": ")
    if sep and (head.rsplit(":", 1)[-1].isdigit() or head.endswith("]")):
        return rest
    return message


def _order(origin: str) -> tuple[str, int]:
    """Problems in file order: ``file:12`` before ``file:100``."""
    for sep, end in ((":", ""), ("[", "]")):
        head, found, tail = origin.rpartition(sep)
        number = tail[: -len(end)] if end else tail
        if found and number.isdigit():
            return head, int(number)
    return origin, 0


def _relative(path: str) -> str:
    cwd = os.getcwd() + os.sep
    return path[len(cwd) :] if path.startswith(cwd) else path

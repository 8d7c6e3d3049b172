"""Evaluation: loss on the eval split, and held-out exact match of generated answers.

Both split their work over the ranks and sum the results. Every rank runs the same number of
forward/generate calls (a rank short of work repeats an item with weight 0): under FSDP each
call gathers weights from all ranks, and an unmatched call would hang.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from mmgen.data.batch import to_device
from mmgen.data.collator import left_padded
from mmgen.data.skips import SkipLog
from mmgen.errors import DataError
from mmgen.train.distributed import World, all_reduce_sum, gather_objects


def shard(items: Sequence[Any], world: World, per_call: int = 1) -> list[tuple[Any, bool]]:
    """This rank's share of ``items`` as ``(item, counts)``: ``items[rank::size]``, padded to
    the same number of calls of ``per_call`` items on every rank with ``(items[0], False)``."""
    mine = [(item, True) for item in items[world.rank :: world.size]]
    calls = math.ceil(math.ceil(len(items) / world.size) / per_call)
    return mine + [(items[0], False)] * (calls * per_call - len(mine)) if items else []


@torch.no_grad()
def eval_loss(
    model: torch.nn.Module,
    batches: Sequence[list[int]],
    dataset: Any,
    collate: Callable,
    world: World,
    autocast: Callable[[], AbstractContextManager],
) -> float:
    """Token-weighted mean loss over ``batches`` (lists of dataset indices) of ``dataset``."""
    totals = torch.zeros(2, dtype=torch.float64, device=world.device)
    for indices, counts in shard(batches, world):
        batch = collate([dataset[i] for i in indices])
        if batch is None:  # every sample of it was skipped when read
            continue
        batch = to_device(batch, world.device)
        with autocast():
            # num_items_in_batch=1 makes HF's loss the sum over the batch's target tokens; the
            # collator built and checked the packing, so the model does not re-check it
            loss = model(**batch, num_items_in_batch=1, validate_packing=False).loss
        if counts:
            totals[0] += loss.double()
            totals[1] += int((batch["labels"] != -100).sum())
    all_reduce_sum(totals)
    return float(totals[0] / totals[1]) if totals[1] else float("nan")


@dataclass
class Accuracy:
    correct: int = 0
    total: int = 0
    skipped: int = 0
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # (id, predicted, answer)
    scores: dict[str, float] = field(default_factory=dict)  # eval.metrics other than exact match

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else float("nan")


@torch.no_grad()
def exact_match(
    model: Any,
    processor: Any,
    rows: Sequence[Any],
    world: World,
    *,
    max_new_tokens: int,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager],
    keep_examples: int = 3,
    metrics: Sequence[str] = (),
) -> Accuracy:
    """Greedy answers to ``rows`` (``SourceRow``s whose last turn is the reference answer),
    compared with the reference after collapsing whitespace; ``metrics`` (``mmgen.metrics``)
    score all ranks' answers together into ``Accuracy.scores``."""
    tokenizer = processor.tokenizer
    pad = processor.pad_token_id
    result = Accuracy()
    skips = SkipLog()

    def prompt_and_answer(row):
        sample = processor.process(
            row.row, origin=row.origin, base_dir=row.base_dir, generation=True
        )
        return sample, reference_answer(processor, row)

    pairs: list[tuple[str, str]] = []  # (predicted, answer) of this rank's counted rows
    work = shard(list(rows), world, batch_size)
    for start in range(0, len(work), batch_size):
        prompts, answers, ids, counted = [], [], [], []
        for row, counts in work[start : start + batch_size]:
            prepared = skips.attempt(processor.on_error, prompt_and_answer, row)
            if prepared is None:
                result.skipped += int(counts)
                continue
            sample, answer = prepared
            prompts.append(sample)
            answers.append(answer)
            ids.append(sample.id)
            counted.append(counts)
        if not prompts:
            continue
        output = model.generate(
            **to_device(left_padded(prompts, pad), world.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
        )
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        for text, answer, sample_id, counts in zip(texts, answers, ids, counted, strict=True):
            if not counts:
                continue
            predicted = " ".join(text.split())
            pairs.append((predicted, answer))
            result.total += 1
            result.correct += predicted == answer
            if len(result.examples) < keep_examples:
                result.examples.append((sample_id, predicted, answer))
    totals = torch.tensor([result.correct, result.total, result.skipped], dtype=torch.float64)
    totals = all_reduce_sum(totals.to(world.device)).cpu()
    result.correct, result.total, result.skipped = (int(v) for v in totals.tolist())
    others = [name for name in metrics if name != "exact_match"]
    if others:
        from mmgen.metrics import score

        everyone = [pair for mine in gather_objects(pairs) for pair in mine]
        predicted, answers = [p for p, _ in everyone], [a for _, a in everyone]
        result.scores = score(others, predicted, answers)
    return result


def reference_answer(processor: Any, row: Any) -> str:
    """The content of the row's last turn, which must be the assistant's."""
    from mmgen.data.rows import parse_row

    parsed = parse_row(row.row, names=processor.names, origin=row.origin)
    if not parsed.turns or parsed.turns[-1].role != "assistant":
        raise DataError(f"{parsed.where}: no final assistant turn to compare answers with")
    return " ".join(parsed.turns[-1].content.split())

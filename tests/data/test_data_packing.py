"""TokenBudgetSampler (budgets, DDP shares, balance, determinism, overlong policies) and the
packed / padded collators, checked against plain-torch references."""

from __future__ import annotations

import ddp_worker
import numpy as np
import pytest
import torch
from helpers.data_samples import png_bytes
from hypothesis import given
from hypothesis import strategies as st

from mmgen import MultimodalProcessor
from mmgen.data import (
    MultimodalDataset,
    PackedCollator,
    PaddedCollator,
    TokenBudgetSampler,
    packed_dataloader,
)
from mmgen.data.sample import cut_point
from mmgen.errors import DataError


def long_tail(n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(60), 0.9, n), 1, 512).astype(int).tolist()


def epoch_batches(sampler: TokenBudgetSampler, epoch: int, ranks: int) -> list[list[list[int]]]:
    """``batches[rank]``: what each rank's sampler yields in ``epoch``."""
    out = []
    for rank in range(ranks):
        sampler.rank = rank
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def make(lengths, **kwargs) -> TokenBudgetSampler:
    return TokenBudgetSampler(lengths, 512, **kwargs)


def test_every_sample_once_within_budget():
    lengths = long_tail(300)
    sampler = make(lengths, num_replicas=1, rank=0, drop_last=True)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 512 for b in batches)
    assert len(batches) == len(sampler)
    stats = sampler.stats()
    assert stats["tokens"] == sum(lengths) and stats["packs"] == len(batches)
    # best-fit decreasing on a long tail comes close to the ceil(sum / capacity) bound
    assert len(batches) <= -(-sum(lengths) // 512) + 2


# sequential packs are uneven (88% full): dealing them unsorted leaves ranks >3 packs apart
@pytest.mark.parametrize("strategy", ["bfd", "sequential"])
def test_ranks_get_disjoint_balanced_shares(strategy):
    lengths = long_tail(1000, seed=1)
    ranks = 3
    sampler = make(lengths, num_replicas=ranks, rank=0, seed=7, strategy=strategy)
    shares = epoch_batches(sampler, 0, ranks)
    assert len({len(share) for share in shares}) == 1  # DDP: same number of steps
    flat = [i for share in shares for b in share for i in b]
    assert set(flat) == set(range(1000))
    repeats = len(flat) - 1000  # only whole packs repeated to fill the last step
    assert 0 <= repeats <= (ranks - 1) * 512
    totals = [sum(lengths[i] for b in share for i in b) for share in shares]
    assert max(totals) - min(totals) <= 512
    # packs of one step are neighbours in size: the per-step spreads add up to at most one pack,
    # plus one for the last step, filled with repeats of the largest packs
    sizes = [[sum(lengths[i] for i in b) for b in share] for share in shares]
    spread = sum(max(step) - min(step) for step in zip(*sizes, strict=True))
    assert spread <= 2 * 512
    assert stats_tokens(sampler) == sum(totals)


def stats_tokens(sampler):
    return sampler.stats()["tokens"]


def test_deterministic_per_seed_and_epoch():
    lengths = long_tail(200, seed=2)
    a = epoch_batches(make(lengths, num_replicas=2, rank=0, seed=3), 1, 2)
    b = epoch_batches(make(lengths, num_replicas=2, rank=0, seed=3), 1, 2)
    assert a == b
    assert a != epoch_batches(make(lengths, num_replicas=2, rank=0, seed=3), 2, 2)
    assert a != epoch_batches(make(lengths, num_replicas=2, rank=0, seed=4), 1, 2)
    unshuffled = epoch_batches(make(lengths, num_replicas=2, rank=0, shuffle=False), 5, 2)
    assert unshuffled == epoch_batches(make(lengths, num_replicas=2, rank=0, shuffle=False), 0, 2)


def test_resume_skips_batches_and_drop_last():
    lengths = long_tail(200, seed=4)
    sampler = make(lengths, num_replicas=2, rank=1, seed=0)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start_batch=4)
    assert list(sampler) == full[4:] and len(sampler) == len(full) - 4
    dropping = make(lengths, num_replicas=2, rank=0, drop_last=True)
    shares = epoch_batches(dropping, 0, 2)
    flat = [i for share in shares for b in share for i in b]
    assert len(flat) == len(set(flat)) <= 200


def test_packs_per_batch_and_item_budget():
    lengths = long_tail(300, seed=5)
    items = torch.tensor([i % 4 for i in range(300)])

    class Lengths:  # the duck-typed dataset the sampler accepts
        def __init__(self):
            self.lengths, self.items, self.ids = torch.tensor(lengths), items, None

    sampler = TokenBudgetSampler(Lengths(), 512, max_items=5, packs_per_batch=2, num_replicas=1)
    batches = list(sampler)
    assert all(sum(lengths[i] for i in b) <= 1024 for b in batches)
    packs = TokenBudgetSampler(Lengths(), 512, max_items=5, num_replicas=1, drop_last=True)
    assert all(int(items[b].sum()) <= 5 for b in packs)
    assert all(sum(lengths[i] for i in b) <= 512 for b in packs)


def test_overlong_error_and_drop():
    lengths = [10, 600, 20, 900]
    with pytest.raises(DataError, match=r"sample #1 \(600 tokens.*capacity=512.*overlong="):
        make(lengths)
    sampler = make(lengths, overlong="drop", num_replicas=1)
    assert sorted(i for b in sampler for i in b) == [0, 2]
    assert sampler.dropped.count == 2 and sampler.stats()["dropped"] == 2


@pytest.fixture
def dataset(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    rows = []
    for i in range(24):
        images = i % 4
        text = " ".join(["hello world"] * (1 + 7 * (i % 5))) + " <image>" * images
        rows.append(
            {
                "id": f"s{i}",
                "text": text,
                "modalities": [
                    {"type": "image", "value": png_bytes(16, 8 * (1 + k), seed=k)}
                    for k in range(images)
                ],
            }
        )
    return MultimodalDataset(rows, processor)


def test_truncate_policy_plans_what_the_collator_cuts(dataset):
    capacity, max_items = 40, 2
    assert int(dataset.lengths.max()) > capacity and int(dataset.items.max()) > max_items
    loader = packed_dataloader(
        dataset, capacity, max_items=max_items, overlong="truncate", num_replicas=1, seed=1
    )
    sampler = loader.batch_sampler
    assert sampler.truncated > 0
    tokens = 0
    for batch, indices in zip(loader, sampler, strict=True):
        lengths = (batch["cu_seqlens"][1:] - batch["cu_seqlens"][:-1]).tolist()
        assert lengths == [int(sampler._planned[i]) for i in indices]
        assert sum(lengths) <= capacity
        items = sum(len(m["values"]) for m in batch["modalities"].values())
        assert items <= max_items
        for name, modality in batch["modalities"].items():
            pid = dataset.processor.placeholder_ids[name]
            assert int((batch["input_ids"] == pid).sum()) == sum(modality["num_embeddings"])
        tokens += sum(lengths)
    assert tokens == sampler.stats()["tokens"]
    # the dataset's own lengths are untouched
    assert int(dataset.lengths.max()) > capacity


def test_packed_collator_matches_reference(dataset):
    samples = [dataset[i] for i in (3, 0, 7, 2)]
    batch = PackedCollator()(samples)
    lengths = [s.length for s in samples]
    assert torch.equal(batch["input_ids"], torch.cat([s.input_ids for s in samples]))
    assert batch["cu_seqlens"].dtype == torch.int32
    assert batch["cu_seqlens"].tolist() == np.cumsum([0, *lengths]).tolist()
    assert batch["position_ids"].tolist() == [p for n in lengths for p in range(n)]
    assert batch["max_seqlen"] == max(lengths) and isinstance(batch["max_seqlen"], int)
    expected = torch.cat([s.labels for s in samples])
    starts = np.cumsum([0, *lengths[:-1]])
    expected[starts] = -100
    assert torch.equal(batch["labels"], expected)
    image = batch["modalities"]["image"]
    want = [(k, item) for k, s in enumerate(samples) for item in s.items]
    assert image["sample_index"] == [k for k, _ in want]
    assert image["num_embeddings"] == [item.num_embeddings for _, item in want]
    assert all(v is item.value for v, (_, item) in zip(image["values"], want, strict=True))
    assert batch["sample_ids"] == ["s3", "s0", "s7", "s2"]
    assert "audio" not in batch["modalities"]


def test_padded_collator(dataset):
    samples = [dataset[i] for i in (1, 6, 3)]
    batch = PaddedCollator(0, pad_to_multiple_of=8)(samples)
    width = -(-max(s.length for s in samples) // 8) * 8
    assert batch["input_ids"].shape == batch["labels"].shape == (3, width)
    for row, s in enumerate(samples):
        assert torch.equal(batch["input_ids"][row, : s.length], s.input_ids)
        assert torch.equal(batch["labels"][row, : s.length], s.labels)
        assert (batch["input_ids"][row, s.length :] == 0).all()
        assert (batch["labels"][row, s.length :] == -100).all()
        assert batch["attention_mask"][row].tolist() == [1] * s.length + [0] * (width - s.length)
    assert batch["modalities"]["image"]["sample_index"] == [0, 1, 1, 2, 2, 2]
    assert "cu_seqlens" not in batch


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 6)), max_size=6),
    st.integers(0, 8),
    st.integers(1, 60),
    st.one_of(st.none(), st.integers(0, 4)),
)
def test_cut_point_never_splits_an_item(layout, tail, limit, max_items):
    spans, cursor = [], 0
    for gap, size in layout:
        spans.append((cursor + gap, cursor + gap + size))
        cursor += gap + size
    length = cursor + tail
    cut = cut_point(spans, length, limit, max_items)
    assert 0 <= cut <= min(length, limit)
    assert not any(start < cut < end for start, end in spans)
    kept = [span for span in spans if span[1] <= cut]
    assert max_items is None or len(kept) <= max_items
    # maximal: one token more would split an item, break a budget, or run past the end
    more = cut + 1
    assert (
        more > min(length, limit)
        or any(start < more < end for start, end in spans)
        or (max_items is not None and sum(1 for s, _ in spans if s < more) > max_items)
    )


@pytest.mark.slow  # two spawned processes import torch: ~10 s on a busy 2-core machine
def test_sampler_reads_the_world_from_torch_distributed(tmp_path):
    world = 2
    out = str(tmp_path / "batches")
    # the worker lives in a light module: spawned processes import it, not this test file
    args = (world, str(tmp_path / "store"), out)
    torch.multiprocessing.spawn(ddp_worker.sampler_batches, args=args, nprocs=world)
    results = [torch.load(f"{out}.{rank}") for rank in range(world)]
    assert [(r[0], r[1]) for r in results] == [(2, 0), (2, 1)]
    reference = make(ddp_worker.LENGTHS, seed=5, num_replicas=2, rank=0)
    assert [r[2] for r in results] == epoch_batches(reference, 2, world)
    assert len(results[0][2]) == len(results[1][2])

"""``Mixture``: what an epoch draws from each source (weights, epochs, max_samples), that the
draw is a pure function of (seed, epoch), and that both samplers plan over it — packs mix the
sources, a repeated row is its own entry, resuming skips exactly, token shares follow weights."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from helpers.data_samples import png_bytes

from mmgen import MultimodalProcessor
from mmgen.data import MultimodalDataset, TokenBudgetSampler, packed_dataloader
from mmgen.data.mixture import Mixture, MixtureSource
from mmgen.data.sampler import PaddedBatchSampler
from mmgen.errors import ConfigError, DataError


class Rows:
    """A dataset of given lengths (what the mixture reads: lengths, items, ids, len, report)."""

    def __init__(self, lengths, prefix="r"):
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.items = torch.zeros_like(self.lengths)
        self.ids = [f"{prefix}{i}" for i in range(len(lengths))]

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return self.ids[index]

    def report(self):
        return f"{len(self)} of {len(self)} samples kept"


def long_tail(n: int, seed: int, median: float) -> list[int]:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(median), 0.8, n), 1, 400).astype(int).tolist()


def two(a_rows=30, b_rows=10, **shares) -> Mixture:
    a = {k[2:]: v for k, v in shares.items() if k.startswith("a_")}
    b = {k[2:]: v for k, v in shares.items() if k.startswith("b_")}
    return Mixture([
        MixtureSource("a", Rows([10] * a_rows, "a"), **a),
        MixtureSource("b", Rows([20] * b_rows, "b"), **b),
    ])  # fmt: skip


def per_row(mixture: Mixture, drawn: torch.Tensor, source: int) -> Counter:
    """How often each row of ``source`` (numbered within the source) is in ``drawn``."""
    mine = drawn[mixture.source_of(drawn) == source]
    return Counter((mine - mixture.starts[source]).tolist())


def test_weights_split_all_rows_by_normalised_weights():
    mixture = two(a_weight=7, b_weight=3)  # 40 rows: 28 + 12, however the weights are scaled
    assert mixture.counts == [28, 12] and mixture.epoch_size == 40
    assert two(a_weight=0.7, b_weight=0.3).counts == [28, 12]
    # 40 * 2/3 = 26.67: the largest remainder takes the sample left over, counts add up
    assert two(a_weight=2, b_weight=1).counts == [27, 13]
    assert two(a_weight=1, b_weight=2).counts == [13, 27]


def test_epochs_are_passes_per_epoch_and_max_samples_keeps_the_first_rows():
    assert two().counts == [30, 10]  # neither: every row once, a plain concatenation
    assert two(a_epochs=0.5, b_epochs=2.5).counts == [15, 25]
    capped = two(a_max_samples=12, b_epochs=3)
    assert capped.rows == [12, 10] and capped.counts == [12, 30] and len(capped) == 22
    assert capped.ids[:12] == [f"a:a{i}" for i in range(12)] and capped.ids[12] == "b:b0"
    drawn = capped.epoch_indices(0, 0)
    assert set(per_row(capped, drawn, 0)) == set(range(12))  # never a row past the cap
    # weights count the capped rows: 22 samples
    assert two(a_max_samples=12, a_weight=1, b_weight=1).counts == [11, 11]


def test_up_sampling_repeats_every_row_and_down_sampling_draws_distinct_rows():
    mixture = two(a_weight=1, b_weight=3)  # a: 10 of 30 rows; b: 30 from 10 rows, 3 each
    for epoch in range(3):
        drawn = mixture.epoch_indices(5, epoch)
        assert len(drawn) == 40 and drawn.tolist() == sorted(drawn.tolist())
        down, up = per_row(mixture, drawn, 0), per_row(mixture, drawn, 1)
        assert len(down) == 10 and set(down.values()) == {1} and max(down) < 30
        assert up == Counter({row: 3 for row in range(10)})
    # 2.5 passes: every row twice, then half the rows once more
    half = Counter(per_row(m := two(b_epochs=2.5), m.epoch_indices(0, 0), 1).values())
    assert half == {2: 5, 3: 5}


def test_the_draw_is_a_pure_function_of_seed_and_epoch():
    mixture = two(a_weight=1, b_weight=1)
    again = two(a_weight=1, b_weight=1)
    assert torch.equal(mixture.epoch_indices(3, 1), again.epoch_indices(3, 1))
    assert not torch.equal(mixture.epoch_indices(3, 1), mixture.epoch_indices(3, 2))
    assert not torch.equal(mixture.epoch_indices(3, 1), mixture.epoch_indices(4, 1))
    # down-sampling sees other rows in other epochs: over 6 epochs most of source a
    seen = {i for epoch in range(6) for i in per_row(mixture, mixture.epoch_indices(0, epoch), 0)}
    assert len(seen) > 25


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([MixtureSource("a", Rows([1]), weight=1, epochs=1)], "weight or epochs, not both"),
        ([MixtureSource("a", Rows([1]), weight=0)], "weight must be > 0, got 0"),
        ([MixtureSource("a", Rows([1]), epochs=-1)], "epochs must be > 0, got -1"),
        ([MixtureSource("a", Rows([1]), weight=1), MixtureSource("b", Rows([1]))], "or none"),
        ([MixtureSource("a", Rows([1])), MixtureSource("a", Rows([1]))], "two sources"),
        ([MixtureSource("a", Rows([]))], "no rows"),
        ([], "at least one source"),
    ],
)
def test_bad_sources_are_one_line_errors(sources, message):
    with pytest.raises(ConfigError, match=message):
        Mixture(sources)


def test_one_source_once_per_epoch_plans_exactly_like_the_plain_dataset():
    lengths = long_tail(300, seed=0, median=60)
    plain = TokenBudgetSampler(Rows(lengths), 512, num_replicas=2, rank=0, seed=3)
    mixed = TokenBudgetSampler(Mixture([MixtureSource("only", Rows(lengths))]), 512,
                               num_replicas=2, rank=0, seed=3)  # fmt: skip
    for epoch in (0, 1):
        assert mixed.plan(epoch) == plain.plan(epoch)


def test_packs_mix_sources_and_repeat_rows_as_separate_entries():
    mixture = Mixture([
        MixtureSource("a", Rows(long_tail(120, seed=1, median=40)), weight=1),
        MixtureSource("b", Rows(long_tail(20, seed=2, median=80)), weight=1),  # 3.5x up
    ])  # fmt: skip
    sampler = TokenBudgetSampler(mixture, 512, num_replicas=1, rank=0, seed=1)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = [i for batch in batches for i in batch]
        assert sorted(flat) == mixture.epoch_indices(1, epoch).tolist()
        assert all(int(mixture.lengths[b].sum()) <= 512 for b in batches)
        assert any(len(set(b)) < len(b) for b in batches)  # a row twice in one pack is fine
        mixed = [b for b in batches if len(set(mixture.source_of(torch.tensor(b)).tolist())) == 2]
        assert len(mixed) > len(batches) // 2
    sampler.set_epoch(1, start_batch=3)
    assert list(sampler) == batches[3:]


def test_over_long_rows_are_named_by_source_and_dropped_from_every_draw():
    mixture = Mixture([MixtureSource("a", Rows([30] * 20, "a")),
                       MixtureSource("b", Rows([40, 900, 50], "b"), epochs=3)])  # fmt: skip
    with pytest.raises(DataError, match=r"sample 'b:b1' \(900 tokens"):
        TokenBudgetSampler(mixture, 512)
    sampler = TokenBudgetSampler(mixture, 512, overlong="drop", num_replicas=1)
    assert sampler.dropped.count == 1  # the row, once, however often an epoch draws it
    flat = Counter(i for batch in sampler for i in batch)
    assert flat == Counter({**{i: 1 for i in range(20)}, 20: 3, 22: 3})


def test_ranks_share_the_epoch_draw():
    mixture = two(a_rows=200, b_rows=50, a_weight=1, b_weight=1)
    shares = []
    for rank in range(2):
        sampler = TokenBudgetSampler(mixture, 64, num_replicas=2, rank=rank, seed=0)
        sampler.set_epoch(2)
        shares.append([i for batch in sampler for i in batch])
    assert len(shares[0]) > 0 and len(shares[1]) > 0
    drawn = Counter(mixture.epoch_indices(0, 2).tolist())
    # every drawn entry once over both ranks, plus whole packs repeated to fill the last step
    assert not drawn - Counter(shares[0] + shares[1])


def test_token_shares_follow_the_weights_within_sampling_noise():
    """Per-source token share of each epoch: the weights times the mean lengths, up to the
    noise of which rows a down-sampled source draws."""
    a, b = long_tail(2000, seed=3, median=50), long_tail(1500, seed=4, median=100)
    mixture = Mixture([MixtureSource("a", Rows(a), weight=0.8),
                       MixtureSource("b", Rows(b), weight=0.2)])  # fmt: skip
    count_a, count_b = mixture.counts
    expected = count_a * np.mean(a) / (count_a * np.mean(a) + count_b * np.mean(b))
    sampler = TokenBudgetSampler(mixture, 2048, num_replicas=1, rank=0, seed=9)
    shares = []
    for epoch in range(4):
        flat = torch.tensor([i for step in sampler.plan(epoch) for i in step[0]])
        tokens = torch.bincount(mixture.source_of(flat), mixture.lengths[flat].double())
        shares.append(float(tokens[0] / tokens.sum()))
    # a draws 2800 of 2000 rows (each once + 800), b 700 of 1500: over 300 simulated epochs
    # the share's standard deviation was 0.005 here, so 0.025 is 5 of them
    assert all(abs(share - expected) < 0.025 for share in shares), (shares, expected)
    assert len(set(shares)) > 1  # the rows drawn differ by epoch


def test_padded_batches_cover_the_draw_random_or_length_grouped():
    mixture = Mixture([
        MixtureSource("a", Rows(long_tail(200, seed=5, median=30)), weight=1),
        MixtureSource("b", Rows(long_tail(56, seed=6, median=60)), weight=1),  # 128 of 56 rows
    ])  # fmt: skip
    padding = {}
    for grouped in (False, True):
        sampler = PaddedBatchSampler(mixture, 8, num_replicas=1, rank=0, seed=2,
                                     group_by_length=grouped)  # fmt: skip
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler) == 32
            flat = sorted(i for batch in batches for i in batch)
            assert flat == mixture.epoch_indices(2, epoch).tolist()
        sampler.set_epoch(1, start_batch=5)
        assert list(sampler) == batches[5:]
        lengths = [mixture.lengths[b] for b in batches]
        padding[grouped] = sum(int(x.max() * len(x) - x.sum()) for x in lengths)
    # the grouping sorted the epoch's draw (the lengths of its own rows): less padding
    assert padding[True] < padding[False] / 3, padding


def test_a_packed_dataloader_over_real_datasets(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)

    def rows(prefix, n, images):
        return [{"id": f"{prefix}{i}", "text": "hello world" * (1 + i % 3) + " <image>" * images,
                 "modalities": [{"type": "image", "value": png_bytes(16, 8, seed=i)}] * images}
                for i in range(n)]  # fmt: skip

    mixture = Mixture([
        MixtureSource("text", MultimodalDataset(rows("t", 12, 0), processor), epochs=0.5),
        MixtureSource("image", MultimodalDataset(rows("i", 4, 1), processor), epochs=2),
    ])  # fmt: skip
    loader = packed_dataloader(mixture, 64, num_replicas=1, seed=0)
    ids = Counter(i for batch in loader for i in batch["sample_ids"])
    assert sum(ids.values()) == 14 and mixture.counts == [6, 8]
    assert {i: n for i, n in ids.items() if i.startswith("i")} == {f"i{k}": 2 for k in range(4)}
    assert len([i for i in ids if i.startswith("t")]) == 6

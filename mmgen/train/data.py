"""The data a run reads: the scanned datasets, the packed (or padded) batch stream of this rank,
eval batches, and the rows whose answers are generated for exact match.

With a mixture (``data.train`` as a list of sources) each batch's real tokens are also counted
per source, from the sampler's plan at the stream's position: the metrics log their shares.
"""

from __future__ import annotations

from typing import Any

from mmgen.data.batch import to_device
from mmgen.data.skips import SkipLog
from mmgen.errors import DataError
from mmgen.train import build
from mmgen.train.config import TrainConfig
from mmgen.train.distributed import World
from mmgen.train.stream import BatchStream


class TrainData:
    def __init__(self, config: TrainConfig, processor: Any, world: World) -> None:
        import torch

        from mmgen.data.loading import packed_dataloader, padded_dataloader
        from mmgen.data.mixture import Mixture

        self.config, self.world = config, world
        packing = config.packing
        self.packed = packing.layout == "packed"
        self.train = build.load_split(config, processor, "train")
        self.mixture = self.train if isinstance(self.train, Mixture) else None
        self.source_names = self.mixture.names if self.mixture is not None else []
        self._source_tokens: list[Any] = []  # per batch drawn: real tokens of each source
        self.eval = build.load_split(config, processor, "eval") if config.data.eval else None
        # samples whose loss has nothing to learn (no assistant answer, or it was cut off)
        self.unlearnt = {
            split: _unlearnt(config, split, dataset)
            for split, dataset in (("train", self.train), ("eval", self.eval))
            if dataset is not None
        }
        self.test_skips = SkipLog()
        self.test = build.open_test(config, processor, self.test_skips)
        # the stream reseeds the loader's own generator: the global RNG is left to the model
        generator, workers = torch.Generator(), config.data.num_workers
        # workers read and process samples ahead of the step; they live across epochs
        ahead = {"persistent_workers": True, "prefetch_factor": 4} if workers else {}
        ahead["pin_memory"] = world.device.type == "cuda"
        if self.packed:
            loader = packed_dataloader(
                self.train, packing.capacity, max_items=packing.max_items,
                overlong=packing.overlong, strategy=packing.strategy,
                packs_per_batch=packing.packs_per_batch, shuffle=True, seed=config.seed,
                num_replicas=world.size, rank=world.rank, num_workers=workers,
                loader_options={"generator": generator, **ahead},
            )  # fmt: skip
        else:
            loader = padded_dataloader(
                self.train, packing.batch_size, pad_token_id=processor.pad_token_id,
                seed=config.seed, num_replicas=world.size, rank=world.rank,
                group_by_length=packing.group_by_length, num_workers=workers, generator=generator,
                **ahead,
            )  # fmt: skip
        self.sampler = loader.batch_sampler
        self.collate = loader.collate_fn
        self.stream = BatchStream(loader, seed=config.seed)

    def _sampler(self, dataset: Any, *, shuffle: bool, replicas: int):
        from mmgen.data.sampler import TokenBudgetSampler

        packing = self.config.packing
        return TokenBudgetSampler(
            dataset,
            packing.capacity,
            max_items=packing.max_items,
            strategy=packing.strategy,
            overlong=packing.overlong,
            packs_per_batch=packing.packs_per_batch,
            shuffle=shuffle,
            seed=self.config.seed,
            num_replicas=replicas,
            rank=self.world.rank if replicas > 1 else 0,
        )

    def next_batch(self) -> dict[str, Any]:
        batch = next(self.stream)
        if self.mixture is not None:
            self._source_tokens.append(self._tokens_by_source())
        return to_device(batch, self.world.device)

    def _tokens_by_source(self) -> Any:
        """Real tokens of each source in the batch the stream yielded last (this rank's)."""
        import torch

        step = self.sampler.plan(self.stream.epoch)[self.stream.position - 1]
        indices = torch.as_tensor(step[self.world.rank] if self.packed else step, dtype=torch.long)
        # packed: the planned lengths (an over-long sample truncated to the budget)
        lengths = self.sampler.planned_lengths if self.packed else self.train.lengths
        sources = self.mixture.source_of(indices)
        return torch.bincount(sources, lengths[indices].double(), minlength=len(self.source_names))

    def sizes(self, batches: list[dict[str, Any]]) -> tuple[float, float, list[float]]:
        """Real tokens in ``batches`` (the latest ``next_batch`` gave), the token slots they took
        (pack capacity when packed: what the budget allowed; batch x longest when padded: what
        was computed), and each mixture source's real tokens among them (``[]`` without one)."""
        import torch

        drawn = self._source_tokens[-len(batches) :] if batches else []
        sources = torch.stack(drawn).sum(0).tolist() if drawn else []
        self._source_tokens.clear()
        tokens = slots = 0
        for batch in batches:
            if self.packed:
                tokens += batch["input_ids"].numel()
                slots += self.config.packing.capacity * self.config.packing.packs_per_batch
            else:
                tokens += int(batch["attention_mask"].sum())
                slots += batch["input_ids"].numel()
        return float(tokens), float(slots), sources

    def _unlearnt(self, split: str) -> str:
        count = self.unlearnt.get(split, 0)
        return f"; {count} without tokens to learn" if count else ""

    def eval_batches(self) -> list[list[int]]:
        """The eval split in batches of dataset indices, in order (no shuffling), each batch once:
        ``evaluate.eval_loss`` deals them to the ranks."""
        if self.packed:
            sampler = self._sampler(self.eval, shuffle=False, replicas=1)
            steps = sampler.plan(0)
            return [step[0] for step in steps[: self.config.eval.max_batches]]
        size = self.config.packing.batch_size
        order = list(range(len(self.eval)))
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        return batches[: self.config.eval.max_batches]

    def accuracy_rows(self, kind: str) -> list[Any]:
        """Rows whose answers are generated: the first ``eval.accuracy_samples`` of the eval
        split during training; the whole test split (else the eval split) at the end."""
        if kind == "eval":
            limit = self.config.eval.accuracy_samples
            if not limit or self.eval is None:
                return []
            source = self.eval.source
            return [source[i] for i in range(min(limit, len(source)))]
        source = self.test if self.test is not None else getattr(self.eval, "source", None)
        return [source[i] for i in range(len(source))] if source is not None else []

    def describe(self) -> str:
        lines = [f"data: train {self.train.report()}{self._unlearnt('train')}"]
        if self.mixture is not None:
            lines += [f"data:   {line}" for line in self.mixture.source_lines()]
        if self.eval is not None:
            lines.append(f"data: eval {self.eval.report()}{self._unlearnt('eval')}")
        if self.test is not None:
            skipped = f"; {self.test_skips.report()}" if self.test_skips.count else ""
            lines.append(f"data: test {len(self.test)} samples{skipped}")
        if self.packed:
            stats = self.sampler.stats(0)
            lines.append(
                f"packing: {stats['packs']} packs of <= {self.config.packing.capacity} tokens per"
                f" epoch, {stats['efficiency']:.1%} full, {stats['steps']} batches per rank"
                + (f", {stats['dropped']} over-long dropped" if stats["dropped"] else "")
            )
        return "\n".join(lines)


def _unlearnt(config: TrainConfig, split: str, dataset: Any) -> int:
    """Kept samples of ``split`` without a token to learn; none with one is an error (the loss
    would be 0 and nothing would train)."""
    import numpy as np

    sources = [s.dataset for s in dataset.sources] if hasattr(dataset, "sources") else [dataset]
    targets = np.concatenate([np.asarray(source.index.targets) for source in sources])
    if not targets.any():
        raise DataError(
            f"{config.where('data', split)}: no sample has tokens to learn (no assistant"
            f" answers): {len(targets)} of {len(targets)} samples have none"
        )
    return int((targets == 0).sum())


def target_tokens(batch: dict[str, Any]) -> int:
    """Tokens the loss predicts: labels that are not ignored, after the causal shift."""
    return int((batch["labels"][..., 1:] >= 0).sum())

"""An endless, resumable stream of training batches over epochs.

The batches come from a ``DataLoader`` of ``mmgen.data.loading`` (``packed_dataloader`` or
``padded_dataloader``), whose batch sampler plans each epoch as a function of ``(seed, epoch)``.
The position is ``(epoch, batches consumed)``: a resumed run selects the same epoch and skips
what was consumed (``batch_sampler.set_epoch(epoch, start_batch)``), so it sees exactly the
batches the interrupted run would have. The DataLoader's generator is reseeded per epoch:
creating its iterator must not draw from the global RNG, or a resumed run's dropout would
differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader


class BatchStream:
    """``next(stream)`` -> a collated batch; ``state_dict()`` is where the next one comes from."""

    def __init__(self, loader: DataLoader, *, seed: int) -> None:
        if loader.generator is None:
            raise ValueError("the stream's DataLoader needs its own generator (generator=...)")
        self.loader, self.seed = loader, seed
        self.epoch, self.position = 0, 0
        self._batches: Iterator[Any] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        for _ in range(2):  # a finished epoch moves on to the next one once
            if self._batches is None:
                self.loader.batch_sampler.set_epoch(self.epoch, self.position)
                self.loader.generator.manual_seed(self.seed + self.epoch)
                self._batches = iter(self.loader)
            for batch in self._batches:
                self.position += 1
                if batch is not None:  # None: every sample of it was skipped when read
                    return batch
            self.epoch, self.position, self._batches = self.epoch + 1, 0, None
        raise RuntimeError("the training data yields no batches (is the dataset empty?)")

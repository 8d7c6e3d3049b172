"""The data side: reading datasets, the multimodal processor, packing and collating.

Names below resolve on first use, so importing ``mmgen.data`` (e.g. for the batch contract)
stays free of torch.
"""

from importlib import import_module

_LAZY = {
    "MultimodalProcessor": "mmgen.data.processor",
    "ProcessedSample": "mmgen.data.sample",
    "ModalityItem": "mmgen.data.sample",
    "MultimodalDataset": "mmgen.data.dataset",
    "TokenBudgetSampler": "mmgen.data.sampler",
    "LengthGroupedSampler": "mmgen.data.grouping",
    "PackedCollator": "mmgen.data.collator",
    "PaddedCollator": "mmgen.data.collator",
    "packed_dataloader": "mmgen.data.loading",
    "padded_dataloader": "mmgen.data.loading",
    "open_source": "mmgen.data.readers",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmgen.data' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

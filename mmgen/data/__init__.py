"""The data side: reading datasets, the multimodal processor, packing and collating.

Names below resolve on first use, so importing ``mmgen.data`` (e.g. for the batch contract)
stays free of torch.
"""

from mmgen.lazy import lazy_names

_LAZY = {
    "MultimodalProcessor": "mmgen.data.processor",
    "add_boundary_tokens": "mmgen.data.processor",
    "ProcessedSample": "mmgen.data.sample",
    "ModalityItem": "mmgen.data.sample",
    "MultimodalDataset": "mmgen.data.dataset",
    "Mixture": "mmgen.data.mixture",
    "MixtureSource": "mmgen.data.mixture",
    "TokenBudgetSampler": "mmgen.data.sampler",
    "LengthGroupedSampler": "mmgen.data.grouping",
    "PackedCollator": "mmgen.data.collator",
    "PaddedCollator": "mmgen.data.collator",
    "packed_dataloader": "mmgen.data.loading",
    "padded_dataloader": "mmgen.data.loading",
    "open_source": "mmgen.data.readers",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

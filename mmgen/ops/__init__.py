"""The only door to the compiled extension ``mmgen._C``.

extension.py   loads ``mmgen._C`` (registering the ``torch.ops.mmgen`` ops) and describes it
buildinfo.py   what the extension is built from (read by setup.py and ``mmgen doctor``)
merge.py       ``packed_merge``: the fused embedding merge, with its fake kernel and autograd
varlen.py      variable-length batching: ``plan_packs``, ``varlen_metadata``, pad/unpad, mask

``from mmgen.ops import packed_merge`` loads the extension on first use; importing this package
alone does not (``setup.py`` and ``mmgen doctor`` read ``buildinfo``/``extension`` without it).
"""

from mmgen.lazy import lazy_names

# public name -> the module that defines it (imported on first use, see __getattr__)
_LAZY = {
    "packed_merge": "mmgen.ops.merge",
    "VarlenMetadata": "mmgen.ops.varlen",
    "block_diagonal_causal_mask": "mmgen.ops.varlen",
    "pad_varlen": "mmgen.ops.varlen",
    "plan_packs": "mmgen.ops.varlen",
    "unpad_varlen": "mmgen.ops.varlen",
    "varlen_metadata": "mmgen.ops.varlen",
}

__all__ = ["empty_cache", *_LAZY]


def empty_cache() -> int:
    """Free the unused host buffers the CPU ops keep for reuse; returns the bytes freed.

    Large outputs of the CPU kernels (e.g. ``packed_merge``'s embeddings) come from a small cache
    (csrc/cpu/host_cache.h) so a training step reuses the memory the previous one freed instead of
    faulting in fresh pages. At most ``MMGEN_CPU_CACHE_MB`` MiB (default 1024; 0 turns the cache
    off) are kept while unused.
    """
    import torch

    from mmgen.ops.extension import load

    load()
    return int(torch.ops.mmgen._empty_cache())


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

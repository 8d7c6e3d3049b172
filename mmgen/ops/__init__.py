"""The only door to the compiled extension ``mmgen._C``.

Importing this module loads the extension (registering the ``torch.ops.mmgen`` ops) and adds,
per op, a fake kernel (meta tensors, ``torch.compile``) and autograd where the op has a gradient.
"""

from mmgen.extension import load as _load

_load()

# --- fused embedding merge ---
from mmgen.ops.merge import packed_merge  # noqa: E402  (needs the ops loaded above)

# --- variable-length batching ---
from mmgen.ops.varlen import (  # noqa: E402  (needs the ops loaded above)
    VarlenMetadata,
    block_diagonal_causal_mask,
    pad_varlen,
    plan_packs,
    unpad_varlen,
    varlen_metadata,
)


def empty_cache() -> int:
    """Free the unused host buffers the CPU ops keep for reuse; returns the bytes freed.

    Large outputs of the CPU kernels (e.g. ``packed_merge``'s embeddings) come from a small cache
    (csrc/cpu/host_cache.h) so a training step reuses the memory the previous one freed instead of
    faulting in fresh pages. At most ``MMGEN_CPU_CACHE_MB`` MiB (default 1024; 0 turns the cache
    off) are kept while unused.
    """
    import torch

    return int(torch.ops.mmgen._empty_cache())


__all__ = [
    "VarlenMetadata",
    "block_diagonal_causal_mask",
    "empty_cache",
    "packed_merge",
    "pad_varlen",
    "plan_packs",
    "unpad_varlen",
    "varlen_metadata",
]

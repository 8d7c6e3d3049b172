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

__all__ = [
    "VarlenMetadata",
    "block_diagonal_causal_mask",
    "packed_merge",
    "pad_varlen",
    "plan_packs",
    "unpad_varlen",
    "varlen_metadata",
]

"""The only door to the compiled extension ``mmgen._C``.

Importing this module loads the extension (registering the ``torch.ops.mmgen`` ops) and adds,
per op, a fake kernel (meta tensors, ``torch.compile``) and autograd where the op has a gradient.
"""

from mmgen.extension import load as _load

_load()

# --- fused embedding merge ---
from mmgen.ops.merge import packed_merge  # noqa: E402  (needs the ops loaded above)

__all__ = ["packed_merge"]

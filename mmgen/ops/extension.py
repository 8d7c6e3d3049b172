"""Loading ``mmgen._C`` and describing it (used by ``mmgen.ops`` and ``mmgen doctor``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from mmgen.errors import ExtensionError
from mmgen.ops.buildinfo import rebuild_command, source_hash

# every op the extension defines; doctor reports each one's backends
OPS = (
    "packed_merge",
    "packed_merge_backward",
    "plan_packs",
    "varlen_metadata",
    "pad_varlen",
    "unpad_varlen",
    "block_diagonal_causal_mask",
)
_BACKENDS = ("CPU", "CUDA")


def load() -> None:
    """Import mmgen._C, whose import registers the ``torch.ops.mmgen`` ops."""
    import torch  # noqa: F401  (the extension links against libtorch: load it first)

    try:
        from mmgen import _C  # noqa: F401
    except ImportError as exc:
        raise ExtensionError(
            f"mmgen._C failed to load ({exc}); rebuild it with: {rebuild_command(sys.executable)}"
        ) from exc


@dataclass
class ExtensionStatus:
    torch_version: str
    loaded: bool
    error: str | None = None
    build: dict[str, Any] = field(default_factory=dict)
    backends: dict[str, list[str]] = field(default_factory=dict)
    stale_reasons: list[str] = field(default_factory=list)
    rebuild: str = ""


def status() -> ExtensionStatus:
    """Load the extension if possible and report what it holds and whether it is stale."""
    import torch

    info = ExtensionStatus(torch_version=torch.__version__, loaded=False)
    info.rebuild = rebuild_command(sys.executable)
    try:
        load()
    except ExtensionError as exc:
        info.error = str(exc.__cause__ or exc)
        return info
    info.loaded = True
    info.build = json.loads(torch.ops.mmgen._build_info())
    for op in OPS:
        name = f"mmgen::{op}"
        if not torch._C._dispatch_has_kernel(name):
            info.backends[op] = []
            continue
        info.backends[op] = [
            key for key in _BACKENDS if torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
        ]
    built_torch = info.build.get("torch_version")
    if built_torch and built_torch != torch.__version__:
        info.stale_reasons.append(f"built against torch {built_torch}, running {torch.__version__}")
    current = source_hash()
    built = info.build.get("source_hash")
    if current is not None and built and current != built:
        info.stale_reasons.append("csrc/ or setup.py changed since the build")
    return info

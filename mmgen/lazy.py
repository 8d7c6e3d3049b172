"""Names a package resolves on first use (PEP 562), so importing it stays cheap: ``import mmgen``
and ``mmgen --help`` never import torch, ``import mmgen.ops`` does not load the extension.

    __getattr__, __dir__ = lazy_names(__name__, {"MultimodalModel": "mmgen.model"})
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_names(
    package: str, table: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: ``table`` maps a public
    name to the module that defines it, imported the first time the name is looked up."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__

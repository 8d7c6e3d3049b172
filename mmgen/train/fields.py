"""Keys a training config passes through to another class's own config: a modality's fields
(``modalities.<name>.config``) and a random-init encoder's or processor's options
(``modalities.<name>.random_init.encoder`` / ``.processor``).

transformers' configs and processors accept any keyword and keep it, so a typo there
(``max_bach_size``) would be silently ignored. The keys are checked against what an instance built
with its defaults has: its attributes (transformers' common config fields included), its
``attribute_map`` aliases, and its ``__init__`` parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from mmgen.errors import did_you_mean
from mmgen.train.config import TrainConfig


def check_fields(
    config: TrainConfig,
    loc: tuple[str | int, ...],
    keys: Iterable[str],
    cls: type,
    build: Callable[[], Any] | None = None,
) -> None:
    """Raise a ``ConfigError`` at ``loc.<key>`` for the first key ``cls`` does not know.
    ``build`` makes the default instance (default: ``cls()``); when that fails, nothing is
    checked (a class that needs arguments has no defaults to compare with)."""
    keys = list(keys)
    if not keys:
        return
    try:
        default = (build or cls)()
    except Exception:
        return
    known = set(_parameters(cls)) | {k for k in vars(default) if not k.startswith("_")}
    known |= set(getattr(default, "attribute_map", None) or {})
    for key in keys:
        if key not in known and not hasattr(default, key):
            hint = did_you_mean(key, sorted(known))
            raise config.error((*loc, key), f"unknown field of {cls.__name__}{hint}")


def _parameters(cls: type) -> list[str]:
    names = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return [name for name in names if name != "self"]

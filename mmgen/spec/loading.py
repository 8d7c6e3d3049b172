"""Reading a spec file: YAML validated by the schema in :mod:`mmgen.spec.schema`, every problem
as ``file:line: field: message`` (:mod:`mmgen.yamlfile`, which reads training configs too).
Specs are small and may come from anyone: at most 256 KiB, no YAML anchors or aliases.
"""

from __future__ import annotations

from pathlib import Path

from mmgen.errors import SpecError
from mmgen.spec.schema import Spec
from mmgen.yamlfile import load_yaml_model

MAX_BYTES = 256 * 1024


def load_spec(path: str | Path, text: str | None = None) -> Spec:
    """Read and validate a spec file (or ``text``, named ``path``); every problem is a
    ``SpecError`` ``file:line: field: message`` (all of them in its ``messages``)."""
    spec, lines = load_yaml_model(
        path, Spec, error=SpecError, max_bytes=MAX_BYTES, aliases=False, text=text,
        see="see `mmgen validate`",
    )  # fmt: skip
    spec._source, spec._lines = str(path), lines
    return spec

"""The built-in specs shipped in ``specs/`` and how a NAME / ``--spec FILE`` becomes a Spec."""

from __future__ import annotations

from pathlib import Path

from mmgen.errors import MmgenError
from mmgen.resources import specs_dir
from mmgen.spec.loading import load_spec
from mmgen.spec.names import check_name
from mmgen.spec.schema import Spec


def builtin_specs() -> dict[str, Path]:
    return {path.stem: path for path in sorted(specs_dir().glob("*.yaml"))}


def builtin_spec(name: str) -> Spec:
    specs = builtin_specs()
    if name not in specs:
        raise MmgenError(
            f"no built-in spec named {name!r}; built-ins: {', '.join(specs)}"
            " (or pass --spec FILE to generate from your own spec)"
        )
    return load_spec(specs[name])


def resolve(name: str, spec_file: Path | None) -> tuple[Spec, bool]:
    """The spec to generate ``name`` from, and whether it is a built-in. With a spec file,
    ``name`` names the generated modality (one spec can serve several modalities).
    """
    check_name(name, "modality name")
    if spec_file is None:
        return builtin_spec(name), True
    spec = load_spec(spec_file)
    if spec.name != name:
        renamed = spec.model_copy(update={"name": name})
        renamed._source, renamed._lines = spec._source, spec._lines
        spec = renamed
    return spec, False

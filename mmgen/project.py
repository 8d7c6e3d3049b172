"""An mmgen project (made by ``mmgen init``): the folder whose ``pyproject.toml`` has a
``[tool.mmgen]`` table, and the package named there, whose ``modalities/`` registers the
project's generated modalities. ``mmgen new-modality`` writes into it; ``mmgen train`` resolves
a config's relative paths against its root and imports that package.
"""

from __future__ import annotations

from pathlib import Path

from mmgen.errors import MmgenError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

PYPROJECT = "pyproject.toml"


def find_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` whose pyproject.toml has ``[tool.mmgen]``."""
    for folder in (start, *start.parents):
        pyproject = folder / PYPROJECT
        if pyproject.is_file() and "[tool.mmgen]" in pyproject.read_text(errors="replace"):
            return folder
    return None


def package_of(root: Path) -> str:
    """The package ``[tool.mmgen] package = "..."`` names in ``root``'s pyproject.toml."""
    pyproject = root / PYPROJECT
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MmgenError(
            f"{root}: no pyproject.toml; run `mmgen init PROJECT` first, pass --project, or"
            " write to a plain folder with --out DIR"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MmgenError(f"{pyproject}: cannot read: {exc}") from None
    package = data.get("tool", {}).get("mmgen", {}).get("package")
    if not isinstance(package, str) or not package.isidentifier():
        raise MmgenError(f'{pyproject}: no [tool.mmgen] package = "..."; not an mmgen project')
    return package

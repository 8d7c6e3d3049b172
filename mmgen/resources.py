"""Where the shipped templates and specs are, in a source checkout or an installed package."""

from importlib import resources
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _package_dir(package: str, folder: str) -> Path:
    try:
        found = Path(str(resources.files(package)))
        if found.is_dir():
            return found
    except ModuleNotFoundError:
        pass  # running from a source tree that was never installed
    return _SOURCE_ROOT / folder


def templates_dir() -> Path:
    return _package_dir("mmgen.templates", "templates")


def specs_dir() -> Path:
    return _package_dir("mmgen.specs", "specs")

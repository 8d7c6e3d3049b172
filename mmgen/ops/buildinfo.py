"""What the compiled extension was built from, so ``mmgen doctor`` can tell when it is stale.

Imported by ``setup.py`` as well as at run time, so it must not import torch.
"""

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# every file whose change requires rebuilding mmgen._C
_SOURCE_PATTERNS = ("csrc/**/*.cpp", "csrc/**/*.cu", "csrc/**/*.h", "csrc/**/*.cuh", "setup.py")


def source_files(root: Path = REPO_ROOT) -> list[Path]:
    files = {p for pattern in _SOURCE_PATTERNS for p in root.glob(pattern) if p.is_file()}
    return sorted(files)


def source_hash(root: Path = REPO_ROOT) -> str | None:
    """sha256 over the extension's sources, or None outside a source checkout (e.g. a wheel)."""
    files = source_files(root)
    if not (root / "csrc").is_dir() or not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def rebuild_command(python: str) -> str:
    """The one command that (re)builds mmgen._C for this interpreter."""
    if (REPO_ROOT / "setup.py").is_file():
        return f"{python} -m pip install --no-build-isolation -e {REPO_ROOT}"
    return f"{python} -m pip install --no-build-isolation --force-reinstall --no-deps mmgen"

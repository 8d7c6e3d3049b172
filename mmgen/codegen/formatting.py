"""Generated Python goes through ruff, like the project's own code: imports sorted
(``ruff check --select I --fix``), then ``ruff format``.

Templates list their imports in any order and need not fit a line length; ruff decides both.
Each file's text is piped through ruff with the path it will have as ``--stdin-filename``, so
ruff applies the settings that will govern that file (the project's ``[tool.ruff]``: line
length, quote style) and nothing is written: the plan still compares and shows final text.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

from mmgen.errors import MmgenError

_TIMEOUT_S = 60  # ruff takes milliseconds per generated file; this only stops a hung process


@functools.cache
def ruff_binary() -> str:
    """The ruff executable installed with the ``ruff`` package (a dependency of mmgen)."""
    try:
        from ruff import find_ruff_bin

        return find_ruff_bin()
    except (ImportError, FileNotFoundError):
        raise MmgenError(
            "ruff is not installed (mmgen formats the files it generates with it): pip install ruff"
        ) from None


def format_python(path: Path, text: str, first_party: tuple[str, ...] = ()) -> str:
    """``text`` as ruff leaves it after sorting the imports and formatting the file ``path``.

    ``first_party``: modules isort must group as first-party although they may not exist on
    disk yet (the package being generated, for its own test).
    """
    known = f"lint.isort.known-first-party = {json.dumps(list(first_party))}"
    imports = ["check", "--select", "I", "--fix", "--exit-zero", "--config", known]
    return _ruff(["format"], path, _ruff(imports, path, text))


def _ruff(arguments: list[str], path: Path, text: str) -> str:
    # run from the nearest existing folder of the target: ruff resolves its project root (and
    # which modules are first-party) from there, never from wherever mmgen was started
    folder = next(p for p in (path.parent, *path.parent.parents) if p.is_dir())
    command = [ruff_binary(), *arguments, "--no-cache", "--stdin-filename", str(path), "-"]
    try:
        done = subprocess.run(
            command, input=text, capture_output=True, text=True, cwd=folder, timeout=_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MmgenError(f"{path}: could not run ruff on the generated file: {exc}") from None
    if done.returncode != 0:
        reason = next((line for line in done.stderr.splitlines() if line.strip()), "no message")
        raise MmgenError(f"{path}: ruff {arguments[0]} failed on the generated file: {reason}")
    return done.stdout

"""Folders a run publishes (checkpoints, the final model): written in a temp folder, listed in a
manifest, then renamed into place, so a visible folder is complete and its files can be checked.

``manifest.json`` is written last and lists every other file with its size and SHA-256::

    {"format": "mmgen-manifest", "version": 1, "step": 100,
     "files": {"model/config.json": {"size": 1234, "sha256": "9f86d0..."}, ...}}

``verify_manifest`` finds what a crash, a full disk or a flipped bit did to a folder: a missing,
truncated, changed or unlisted file. Checksums are of the files as written, so a folder copied
elsewhere (``cp -r``, ``rsync``) still verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgen.errors import CheckpointError

MANIFEST_FILE = "manifest.json"
FORMAT = "mmgen-manifest"
VERSION = 1
TMP_PREFIX = ".tmp-"  # folders being written; a later run removes those a killed run left
_CHUNK = 1 << 20


def publish(final: Path, write: Callable[[Path], None], **info: Any) -> Path:
    """Call ``write(folder)`` on a temp folder beside ``final``, add the manifest (``info`` goes
    into it), sync everything to disk and rename the folder to ``final`` (replacing an older
    one of that name). On any failure nothing is left but what was there before."""
    final = Path(final)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    old = final.parent / f"{TMP_PREFIX}old-{final.name}-{os.getpid()}"
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        write_manifest(tmp, **info)
        if final.exists():  # e.g. the same step saved again, or a model saved over a model
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)  # the rename itself must reach the disk
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial(directory: Path) -> None:
    """Delete the temp folders a killed run left in ``directory`` (call with the run's lock)."""
    if Path(directory).is_dir():
        for path in Path(directory).iterdir():
            if path.name.startswith(TMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)


def write_manifest(folder: Path, **info: Any) -> None:
    """List every file under ``folder`` (each synced to disk as it is hashed), then write the
    manifest itself, synced too."""
    files = {}
    for path in _files(folder):
        files[path.relative_to(folder).as_posix()] = _describe(path, sync=True)
    manifest = {"format": FORMAT, "version": VERSION, **info, "files": files}
    target = folder / MANIFEST_FILE
    with target.open("w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    for directory in {folder, *(p.parent for p in _files(folder))}:
        _fsync_dir(directory)


def verify_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` when every file it lists is there, whole and unchanged, and no
    other file is; else a ``CheckpointError`` naming the first file that is not."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        why = "missing (an incomplete folder, or one an older mmgen wrote)"
        raise _invalid(path, why) from None
    except (UnicodeDecodeError, ValueError, OSError) as exc:
        raise _invalid(path, f"unreadable ({type(exc).__name__})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("format") != FORMAT:
        raise _invalid(path, f'not an mmgen manifest (no "format": "{FORMAT}")')
    for name, expected in sorted(files.items()):
        target = folder / name
        if (
            not isinstance(expected, dict)
            or not isinstance(expected.get("size"), int)
            or not _inside(folder, target)
        ):
            raise _invalid(path, f"malformed entry {name!r}")
        if target.is_symlink() or not target.is_file():
            raise _invalid(target, "missing" if not target.exists() else "not a regular file")
        size = target.stat().st_size
        if size != expected.get("size"):
            how = "truncated" if size < expected["size"] else "grown"
            raise _invalid(target, f"{size} bytes, the manifest says {expected['size']} ({how})")
        if _describe(target)["sha256"] != expected.get("sha256"):
            raise _invalid(target, "its SHA-256 differs from the manifest's (corrupt)")
    for extra in _files(folder):
        name = extra.relative_to(folder).as_posix()
        if name not in files:
            raise _invalid(extra, "not listed in the manifest (added after the folder was saved)")
    return manifest


def _files(folder: Path) -> list[Path]:
    """Every file under ``folder`` but the manifest, symlinks included (verify refuses them)."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if (path.is_file() or path.is_symlink()) and path != folder / MANIFEST_FILE:
            found.append(path)
    return found


def _describe(path: Path, *, sync: bool = False) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if sync:  # the rename must not reach the disk before the data it makes visible
            os.fsync(handle.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _inside(folder: Path, target: Path) -> bool:
    return os.path.normpath(target).startswith(os.path.normpath(folder) + os.sep)


def _invalid(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a valid checkpoint: {why}")

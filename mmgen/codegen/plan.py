"""Plan, then apply: each target path gets one verdict, a dry run shows the plan (with diffs),
and applying is all-or-nothing.

Verdicts: ``create`` (new file), ``identical`` (already holds exactly this text; nothing to do),
``conflict`` (holds other text; stops the run unless forced), ``overwrite`` (other text, replaced:
with ``--force``, or an edit at an anchor comment, which keeps everything already there).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from mmgen.errors import MmgenError


class Verdict(str, Enum):
    CREATE = "create"
    IDENTICAL = "identical"
    CONFLICT = "conflict"
    OVERWRITE = "overwrite"


@dataclass(frozen=True)
class Action:
    path: Path
    verdict: Verdict
    text: str
    old: str | None = None
    note: str = ""

    def diff(self, root: Path) -> str:
        name = _shown(self.path, root)
        lines = difflib.unified_diff(
            (self.old or "").splitlines(keepends=True),
            self.text.splitlines(keepends=True),
            fromfile=f"{name} (on disk)",
            tofile=f"{name} (generated)",
        )
        return "".join(lines)


@dataclass(frozen=True)
class Plan:
    root: Path
    actions: tuple[Action, ...]

    @property
    def conflicts(self) -> list[Action]:
        return [a for a in self.actions if a.verdict is Verdict.CONFLICT]

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.verdict in (Verdict.CREATE, Verdict.OVERWRITE)]

    def describe(self, diffs: bool = False) -> str:
        width = max(len(v.value) for v in Verdict)
        out = []
        for action in self.actions:
            note = f"  ({action.note})" if action.note else ""
            out.append(f"{action.verdict.value:<{width}}  {_shown(action.path, self.root)}{note}")
            wanted = action.verdict is Verdict.CONFLICT or (
                diffs and action.verdict is Verdict.OVERWRITE
            )
            if wanted:
                out.append(action.diff(self.root).rstrip("\n"))
        return "\n".join(out)


def plan_files(
    root: Path,
    files: dict[Path, str],
    *,
    force: bool = False,
    edits: dict[Path, tuple[Callable[[str], str], str]] | None = None,
) -> Plan:
    """Give each of ``files`` (path -> wanted text) its verdict; ``edits`` maps an existing file
    to a function that returns its edited text (an anchor edit) and a note for the plan.
    """
    actions = []
    for path, text in files.items():
        old = _read(path)
        if old is None:
            actions.append(Action(path, Verdict.CREATE, text))
        elif old == text:
            actions.append(Action(path, Verdict.IDENTICAL, text, old))
        else:
            verdict = Verdict.OVERWRITE if force else Verdict.CONFLICT
            actions.append(Action(path, verdict, text, old))
    for path, (edit, note) in (edits or {}).items():
        old = _read(path)
        if old is None:
            raise MmgenError(f"{path}: missing; it should hold the anchor comment to edit")
        text = edit(old)
        verdict = Verdict.IDENTICAL if text == old else Verdict.OVERWRITE
        actions.append(Action(path, verdict, text, old, note))
    return Plan(root, tuple(actions))


def apply(plan: Plan) -> list[Action]:
    """Write every create/overwrite, or nothing: a conflict is an error before anything is
    written; each new text goes to a temporary file beside its target first, then all are
    renamed into place; if any step fails, files already replaced are put back.
    """
    if plan.conflicts:
        names = ", ".join(_shown(a.path, plan.root) for a in plan.conflicts)
        raise MmgenError(
            f"{names}: exists with other content; rerun with --force to overwrite"
            " (--dry-run shows the diff)"
        )
    changes = plan.changes
    made_dirs: list[Path] = []
    staged: list[tuple[Action, Path]] = []
    done: list[tuple[Action, Path | None]] = []
    try:
        for action in changes:
            made_dirs += _make_parents(action.path.parent)
            staged.append((action, _stage(action)))
        for action, temp in staged:
            backup = None
            if action.path.exists():
                backup = action.path.with_name(f".{action.path.name}.mmgen-backup")
                os.replace(action.path, backup)
            done.append((action, backup))
            os.replace(temp, action.path)
    except BaseException:
        for action, backup in reversed(done):
            if backup is not None:
                os.replace(backup, action.path)
            elif action.path.exists():
                action.path.unlink()
        for _, temp in staged:
            temp.unlink(missing_ok=True)
        for folder in reversed(made_dirs):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    for _, backup in done:
        if backup is not None:
            backup.unlink(missing_ok=True)
    return changes


def _stage(action: Action) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{action.path.name}.", dir=action.path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(action.text)
    if action.old is not None:
        os.chmod(name, action.path.stat().st_mode & 0o777)
    else:
        os.chmod(name, 0o644)
    return Path(name)


def _make_parents(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def _read(path: Path) -> str | None:
    if path.is_dir():
        raise MmgenError(f"{path}: is a directory where a file would be written")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise MmgenError(f"{path}: cannot read: {exc}") from None


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)

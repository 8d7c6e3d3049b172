"""One run per output folder: ``<output_dir>/train.lock``, held while ``mmgen train`` runs.

The lock is an ``flock`` on the file, which the kernel releases when the process ends however
it ends (``kill -9`` included), so a lock is never left behind by a dead run. The file names its
holder (pid, host, start time): a second run into the folder, or a resume while the first still
runs, stops with one line naming that process. A file that still names a holder which no longer
holds the lock is a run that died without cleaning up; the next run takes it over and says so.
On a filesystem without ``flock`` the recorded pid is checked instead (same host only).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mmgen.errors import TrainingError
from mmgen.train import distributed

if TYPE_CHECKING:
    from mmgen.train.config import TrainConfig

LOCK_FILE = "train.lock"


@contextlib.contextmanager
def hold_run_folders(config: TrainConfig, world: distributed.World) -> Iterator[list[str]]:
    """Lock the run's output folder (and a checkpoint folder outside it) while the run lasts;
    rank 0 takes the locks for all ranks. Yields what to say about the locks of dead runs it
    took over."""
    out = config.path(config.output_dir)
    folders = [out]
    if config.checkpoint.dir and not config.path(config.checkpoint.dir).is_relative_to(out):
        folders.append(config.path(config.checkpoint.dir))
    locks = [RunLock(folder) for folder in folders] if world.main else []
    error = None
    try:
        for lock in locks:
            lock.acquire()
    except TrainingError as exc:
        error = exc
    try:
        if distributed.any_rank(error is not None, world.device):
            raise error or TrainingError("the output folder is in use by another run (see rank 0)")
        yield [
            f"took over {lock.path} from a run that is no longer running ({lock.took_over})"
            for lock in locks
            if lock.took_over
        ]
    finally:
        for lock in locks:
            lock.release()


class RunLock:
    """``with RunLock(folder) as lock:`` holds the folder for this process; ``lock.took_over``
    describes the dead run whose lock it took, if any."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.took_over: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = _read(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
            # a filesystem without locks (some network mounts): trust a live pid on this host
            if busy or _alive_here(previous):
                os.close(fd)
                raise TrainingError(
                    f"{self.path.parent} is in use by another mmgen train"
                    f" ({_describe(previous)}); wait for it to finish or stop it, or choose"
                    " another output_dir"
                ) from None
        if previous:
            self.took_over = _describe(previous)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empty the file (no holder) and unlock it. The file stays: deleting a locked file
        lets two later runs lock two different files."""
        if self._fd is None:
            return
        import fcntl

        os.ftruncate(self._fd, 0)
        with contextlib.suppress(OSError):  # not locked where the filesystem has no locks
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict | None:
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive_here(record: dict | None) -> bool:
    """Whether ``record`` names a live process of this host (other than this one)."""
    if not record or record.get("host") != socket.gethostname():
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _describe(record: dict | None) -> str:
    if not record:
        return "process unknown"
    started = record.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        if isinstance(started, (int, float))
        else "?"
    )
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')}, started {when}"

"""The output folder's lock: one holder at a time, named in the refusal; a dead holder's lock is
taken over, saying so; a filesystem without flock falls back to the recorded pid."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmgen.errors import TrainingError
from mmgen.train.lock import LOCK_FILE, RunLock


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has it (until the pid is reused, seconds later)


def record(pid: int, host: str | None = None) -> str:
    return json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": 0})


def test_one_holder_at_a_time(tmp_path: Path) -> None:
    with RunLock(tmp_path) as first:
        assert first.took_over is None
        with pytest.raises(TrainingError) as caught:
            RunLock(tmp_path).acquire()
        message = str(caught.value)
        assert message.startswith(f"{tmp_path} is in use by another mmgen train (pid {os.getpid()}")
        assert socket.gethostname() in message and "\n" not in message
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: no holder named
    with RunLock(tmp_path) as again:
        assert again.took_over is None


def test_a_dead_runs_lock_is_taken_over(tmp_path: Path) -> None:
    pid = dead_pid()
    (tmp_path / LOCK_FILE).write_text(record(pid))
    with RunLock(tmp_path) as lock:
        assert (
            lock.took_over is not None and f"pid {pid} on {socket.gethostname()}" in lock.took_over
        )
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_without_flock_the_recorded_pid_decides(tmp_path: Path, monkeypatch) -> None:
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(record(sleeper.pid))
        with pytest.raises(
            TrainingError, match=f"in use by another mmgen train \\(pid {sleeper.pid}"
        ):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    (tmp_path / LOCK_FILE).write_text(record(sleeper.pid))  # now dead
    with RunLock(tmp_path) as lock:
        assert f"pid {sleeper.pid}" in lock.took_over
    (tmp_path / LOCK_FILE).write_text(record(1, host="another-host"))  # can't be checked: taken
    with RunLock(tmp_path) as lock:
        assert "another-host" in lock.took_over

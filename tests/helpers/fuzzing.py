"""What the fuzz suite (``tests/fuzz/``) shares: its hypothesis settings, a per-example time
bound, and the property every surface checks for bad input — one line of mmgen's own error,
a non-zero exit and nothing written.

CI runs each test's fixed number of examples from a fixed seed (``derandomize``), so a run is
repeatable and costs the same every time. ``MMGEN_FUZZ_EXAMPLES=N`` runs N examples per test
from a random seed instead (the long run; a failure prints the seed that reproduces it)::

    MMGEN_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q tests/fuzz
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, settings

LONG = int(os.environ.get("MMGEN_FUZZ_EXAMPLES", "0") or 0)
# the most one example may take: far more than any real answer needs, far less than a hang
EXAMPLE_SECONDS = float(os.environ.get("MMGEN_FUZZ_EXAMPLE_SECONDS", "60"))


def fuzz(examples: int) -> settings:
    """``examples`` examples from a fixed seed in CI; ``MMGEN_FUZZ_EXAMPLES`` from a random one."""
    return settings(
        max_examples=LONG or examples,
        derandomize=not LONG,
        deadline=None,  # time is bounded by `bounded` (a hang), not by hypothesis' timing
        database=None,  # nothing written into the checkout
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


class Hang(AssertionError):
    """An example ran past ``EXAMPLE_SECONDS``."""


@contextlib.contextmanager
def bounded(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    """Fail an example that runs past ``seconds`` (a real timer: a blocking read is
    interrupted too)."""

    def expire(signum, frame):
        raise Hang(f"an example ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(message: str) -> str:
    """``message`` if it is one non-blank line without a traceback, else an AssertionError."""
    assert message.strip(), "an empty error message"
    assert "\n" not in message.strip(), f"a multi-line error: {message!r}"
    assert "Traceback" not in message, message
    return message


def assert_clean_cli_failure(result, written: list[Path] = ()) -> str:
    """A CliRunner result of bad input: exit code 1, one ``error: ...`` line on the output, no
    exception other than the exit, and none of ``written`` exists. Returns the line."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for path in written:
        assert not Path(path).exists(), f"{path} was written"
    return one_line(lines[0])

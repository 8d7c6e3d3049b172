"""Runs the GPU check's steps in order, each under its own time limit, and writes the summary.

    python -m mmgen.gpucheck --dry-run          # every step, its kind and its time limit
    bash scripts/gpu_check.sh                   # the whole check (what that script runs)

Exit status: 0 when every step passed; 1 at the first failed setup or check step (the rest are
not run, unless ``--keep-going``) or when a figures step failed; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from mmgen.gpucheck import plan as planning
from mmgen.gpucheck import summary

ROOT = Path(__file__).resolve().parents[2]
TAIL_LINES = 60  # enough for the bench-merge table


class ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one readable line, not argparse's usage block
        raise ArgumentError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dry-run", action="store_true", help="List the steps and their limits; run nothing."
    )
    p.add_argument(
        "--out",
        type=Path,
        help="Where the summary and logs go (default $OUT, else build/gpu-check).",
    )
    p.add_argument(
        "--python",
        help="An interpreter that already has CUDA torch and the requirements: no installs.",
    )
    p.add_argument(
        "--venv",
        type=Path,
        default=ROOT / ".venv-gpu",
        help="The venv made and filled otherwise (default .venv-gpu).",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="STEP",
        help="Run only this step (repeatable).",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="STEP",
        help="Leave this step out (repeatable).",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="Run every step even after a failed check (the exit status still says it failed).",
    )
    p.add_argument(
        "--deadline",
        type=int,
        default=planning.DEADLINE_S,
        help=f"Seconds for the whole run (default {planning.DEADLINE_S}).",
    )
    return p


def select(all_steps: list[planning.Step], only: Sequence[str], skip: Sequence[str]):
    names = [step.name for step in all_steps]
    for name in (*only, *skip):
        if name not in names:
            raise ArgumentError(f"no step named {name!r}; steps: {', '.join(names)}")
    return [s for s in all_steps if (not only or s.name in only) and s.name not in skip]


def run_step(
    step: planning.Step, limit_s: float, log: Path, echo=sys.stdout
) -> tuple[str, int | None, str]:
    """(status, return code, output) of one step run by bash in the repository root; the whole
    process group is ended when the limit is reached."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    chunks: list[str] = []
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            ["bash", "-c", step.command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
        )  # fmt: skip

        def tee() -> None:
            for line in process.stdout:
                chunks.append(line)
                sink.write(line)
                echo.write(f"  {line}")
                echo.flush()

        reader = threading.Thread(target=tee, daemon=True)
        reader.start()
        try:
            process.wait(timeout=limit_s)
            status = "passed" if process.returncode == 0 else "FAILED"
        except subprocess.TimeoutExpired:
            _end(process)
            status = "timed out"
        reader.join(timeout=10)
    return status, process.returncode, "".join(chunks)


def _end(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _commit() -> str:
    """The checkout's commit (with "+changes" when the tree differs from it), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.deadline <= 0:
            raise ArgumentError(f"--deadline must be positive, got {args.deadline}")
        python = args.python or str(args.venv / "bin" / "python")
        out = (args.out or summary.output_dir(ROOT)).resolve()
        steps = select(
            planning.steps(python, out, install=args.python is None), args.only, args.skip
        )
    except ArgumentError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(planning.describe(steps))
        print(f"summary: {out / summary.SUMMARY_FILE}")
        return 0
    records = [summary.StepRecord(s.name, s.kind, s.limit_s) for s in steps]
    notes = [
        f"- started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- commit: `{_commit()}`",
        f"- python: `{python}`",
        f"- deadline: {args.deadline} s",
    ]
    start = time.monotonic()
    stopped = False
    out.mkdir(parents=True, exist_ok=True)
    for step, record in zip(steps, records, strict=True):
        left = args.deadline - (time.monotonic() - start)
        if stopped or left <= 0:
            continue  # stays "not run"
        limit = min(step.limit_s, left)
        print(
            f"gpu_check: [{step.kind}] {step.name} (limit {limit:.0f} s): {step.what}", flush=True
        )
        began = time.monotonic()
        status, code, output = run_step(step, limit, out / f"{step.name}.log")
        record.status, record.returncode = status, code
        record.seconds = time.monotonic() - began
        try:
            record.results = summary.parse_results(output)
        except ValueError as exc:
            record.status, output = "FAILED", f"{output}\n{exc}"
        if record.status != "passed" or (step.kind == "figures" and not record.results):
            record.tail = "\n".join(output.splitlines()[-TAIL_LINES:])
        if record.status != "passed":
            stopped = step.kind != "figures" and not args.keep_going
        print(f"gpu_check: {step.name} {record.status} in {record.seconds:.1f} s", flush=True)
        summary.write(out, records, notes=notes)
    path = summary.write(out, records, notes=notes)
    print(f"gpu_check: summary in {path}")
    return 0 if all(r.status == "passed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fuzzed calls of the public ops (``mmgen.ops``): dtypes, shapes, devices (cpu, meta, cuda
where visible), ids and lengths out of range, empty and non-contiguous tensors, feature counts,
widths and dtypes that do not match, Python lists of any ints. Every call runs in a separate
worker process (``ops_worker.py``), so an abort or a crash in the compiled code is caught as
such instead of ending the test run.

Property: the op's result equals a few-line torch reference, or it raises the ``TypeError``,
``ValueError`` or ``IndexError`` its docstring names, with a one-line message naming the op;
the worker survives the call and answers within a bounded time.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.fuzzing import EXAMPLE_SECONDS, fuzz
from hypothesis import event, given
from hypothesis import strategies as st

WORKER = Path(__file__).with_name("ops_worker.py")
DEVICES = ["cpu", "cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])
ANY_DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool, torch.float32,
              torch.float16, torch.bfloat16, torch.float64]  # fmt: skip


class Worker:
    """One ``ops_worker.py`` process; a new one after a crash or a hang."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        return self.process

    def call(self, case: dict) -> tuple[str, str]:
        process = self.start()
        data = pickle.dumps(case)
        try:
            process.stdin.write(struct.pack("<Q", len(data)) + data)
            process.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([process.stdout], [], [], EXAMPLE_SECONDS)
        if not ready:
            process.kill()
            process.wait()
            return "hang", f"no answer within {EXAMPLE_SECONDS:g} s"
        header = process.stdout.read(8)
        if len(header) < 8:
            code = process.wait()
            return "crash", f"the worker died (exit code {code})"
        return pickle.loads(process.stdout.read(struct.unpack("<Q", header)[0]))

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def worker():
    running = Worker()
    yield running
    running.close()


def judge(worker: Worker, case: dict) -> None:
    op = case["op"]
    status, detail = worker.call(dict(case))
    assert status in ("ok", "raised"), f"{op} on {case}: {status}: {detail}"
    if status == "raised":
        message = detail.split(": ", 1)[1]
        assert message.strip() and "\n" not in message.strip(), detail
        assert op in message, f"the message does not name {op}: {detail}"
        event(f"{op}: raised {detail.split(':')[0]}")
    else:
        event(f"{op}: ok")


@st.composite
def ints(draw, max_size=8, low=-3, high=20, boundaries=False):
    """Integer data: a list, or a tensor of any dtype, maybe a strided view; half the time
    well-formed (lengths from 0, or with ``boundaries`` sequence boundaries from 0 up)."""
    if draw(st.booleans()):
        items = draw(st.lists(st.integers(0, high // 2), max_size=max_size))
        if boundaries:
            items = [sum(items[:i]) for i in range(len(items) + 1)]
        dtypes = [torch.int64, torch.int32]
    else:
        odd = st.sampled_from([2**31, 2**32 + 2, -(2**40), 2**63 - 1])
        items = draw(st.lists(st.integers(low, high) | odd, max_size=max_size))
        dtypes = ANY_DTYPES
    form = draw(st.sampled_from(["list", "tensor", "tensor", "strided"]))
    if form == "list":
        return items
    base = torch.tensor(items, dtype=torch.int64).to(draw(st.sampled_from(dtypes)))
    if form == "strided" and items:
        base = torch.stack([base, base], 1)[:, 0]  # a view with stride 2
    return base


@fuzz(50)
@given(data=st.data())
def test_varlen_metadata_and_plan_packs(worker, data):
    lengths, device = data.draw(ints()), data.draw(st.sampled_from(DEVICES))
    judge(worker, {"op": "varlen_metadata", "device": device, "lengths": lengths})
    judge(worker, {
        "op": "plan_packs", "device": device, "lengths": data.draw(ints()),
        "capacity": data.draw(st.integers(-2, 40) | st.sampled_from([2**31, 2**62])),
        "strategy": data.draw(st.sampled_from(["bfd", "ffd", "sequential", "best"])),
    })  # fmt: skip


@fuzz(50)
@given(data=st.data())
def test_pad_unpad_and_mask(worker, data):
    device = data.draw(st.sampled_from(DEVICES))
    tokens = data.draw(st.integers(0, 12))
    features = data.draw(st.lists(st.integers(0, 3), max_size=2))
    x = torch.arange(tokens * int(torch.tensor(features).prod()), dtype=torch.float32)
    x = x.reshape(tokens, *features).to(data.draw(st.sampled_from(ANY_DTYPES)))
    if data.draw(st.booleans()) and x.dim() >= 2:
        x = x.transpose(0, 1).contiguous().transpose(0, 1)  # the same values, other strides
    judge(worker, {
        "op": "pad_varlen", "device": device, "x": x,
        "cu_seqlens": data.draw(ints(max_size=5, high=8, boundaries=True)),
        "max_seqlen": data.draw(st.integers(-1, 9)),
    })  # fmt: skip
    judge(worker, {
        "op": "block_diagonal_causal_mask", "device": device,
        "cu_seqlens": data.draw(ints(max_size=5, high=8, boundaries=True)),
        "dtype": data.draw(st.sampled_from([torch.float32, torch.bfloat16, torch.int32])),
    })  # fmt: skip
    shape = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    judge(worker, {
        "op": "unpad_varlen", "device": device,
        "x": torch.randn(shape).to(data.draw(st.sampled_from(ANY_DTYPES))),
        "lengths": data.draw(ints(max_size=5, high=6)),
    })  # fmt: skip


@fuzz(60)
@given(data=st.data())
def test_packed_merge(worker, data):
    vocab, hidden = data.draw(st.integers(0, 12)), data.draw(st.integers(0, 5))
    placeholders = data.draw(
        st.lists(st.integers(-300, 20) | st.sampled_from([2**40, -(2**63)]), max_size=3)
    )
    shape = data.draw(st.sampled_from([(0,), (7,), (2, 5), (1, 0), (3,), (2, 2, 2)]))
    size = int(torch.tensor(shape).prod())
    pool = [*range(-1, vocab + 1), *placeholders]
    ids = torch.tensor(data.draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size)))
    ids = ids.reshape(shape).to(data.draw(st.sampled_from([torch.int64, torch.int64, torch.int32])))
    dtype = data.draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float64, torch.int64]))
    counts = [int((ids == p).sum()) for p in placeholders]
    if data.draw(st.booleans()):  # a wrong feature count somewhere
        counts = [c + data.draw(st.integers(-1, 1)) for c in counts]
    features = [
        torch.randn(max(c, 0), hidden + data.draw(st.sampled_from([0, 0, 0, 1]))).to(
            data.draw(st.sampled_from([dtype, dtype, torch.float16]))
        )
        for c in counts
    ]
    if features and data.draw(st.booleans()):
        features = features[: data.draw(st.integers(0, len(features)))]
    judge(worker, {
        "op": "packed_merge", "device": data.draw(st.sampled_from(DEVICES)), "input_ids": ids,
        "weight": torch.randn(vocab, hidden).to(dtype), "features": features,
        "placeholder_ids": placeholders,
    })  # fmt: skip

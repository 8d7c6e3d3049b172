"""The process the ops fuzz (``test_fuzz_ops.py``) runs every op call in: it reads pickled cases
on stdin, runs the op and its torch reference, and writes back ``(status, detail)``:
``("ok", "")``, ``("raised", "TypeError: ...")`` for the errors the ops document, ``("wrong",
what)`` when the result differs from the reference, or ``("other", traceback)``. An abort or a
crash ends this process, which the test sees as such (and starts a new one).

    python tests/fuzz/ops_worker.py   # then length-prefixed pickles on stdin
"""

from __future__ import annotations

import pickle
import struct
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: merge_reference
from merge_reference import reference_merge

from mmgen import ops

DOCUMENTED = (TypeError, ValueError, IndexError)


def to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
        return [v.to(device) for v in value]
    return value


def is_meta(value) -> bool:
    return isinstance(value, torch.Tensor) and value.device.type == "meta"


def listed(value) -> list[int]:
    return torch.as_tensor(value).cpu().tolist()


def varlen_metadata(lengths):
    meta = ops.varlen_metadata(lengths)
    if is_meta(lengths):
        return None
    given, cu = listed(lengths), [0]
    for n in given:
        cu.append(cu[-1] + n)
    if meta.cu_seqlens.tolist() != cu or meta.max_seqlen != max(given, default=0):
        return f"varlen_metadata({given}) gave {meta}"
    if meta.position_ids.tolist() != [p for n in given for p in range(n)]:
        return f"varlen_metadata({given}): wrong position_ids"
    return None


def plan_packs(lengths, capacity, strategy):
    plan = ops.plan_packs(lengths, capacity, strategy=strategy)
    sizes = listed(lengths)
    if len(plan) != len(sizes):
        return f"plan of {len(plan)} for {len(sizes)} samples"
    totals: dict[int, int] = {}
    for pack, size in zip(plan.tolist(), sizes, strict=True):
        totals[pack] = totals.get(pack, 0) + int(size)
    if any(total > capacity for total in totals.values()):
        return f"plan_packs({sizes}, {capacity}): a pack over capacity: {totals}"
    if sorted(totals) != list(range(len(totals))):
        return f"plan_packs: packs not numbered 0..P-1: {sorted(totals)}"
    return None


def pad_varlen(x, cu_seqlens, max_seqlen):
    padded = ops.pad_varlen(x, cu_seqlens, max_seqlen, -1.0)
    if x.device.type == "meta" or is_meta(cu_seqlens):
        return None
    cu = listed(cu_seqlens)
    want = torch.full((len(cu) - 1, max_seqlen, *x.shape[1:]), -1.0, dtype=x.dtype)
    for n in range(len(cu) - 1):
        want[n, : cu[n + 1] - cu[n]] = x[cu[n] : cu[n + 1]].cpu()
    if not torch.equal(padded.cpu(), want):
        return "pad_varlen differs from the reference"
    lengths = [cu[n + 1] - cu[n] for n in range(len(cu) - 1)]
    if not torch.equal(ops.unpad_varlen(padded, lengths).cpu(), x.cpu()[: cu[-1]]):
        return "unpad_varlen(pad_varlen(x)) is not x"
    return None


def unpad_varlen(x, lengths):
    out = ops.unpad_varlen(x, lengths)
    if x.device.type == "meta" or is_meta(lengths):
        return None
    sizes = listed(lengths)
    x = x.cpu()
    want = torch.cat([x[n, :s] for n, s in enumerate(sizes)]) if sizes else x.new_zeros(0)
    if not torch.equal(out.cpu().reshape(want.shape), want) or out.shape[1:] != x.shape[2:]:
        return "unpad_varlen differs from the reference"
    return None


def block_diagonal_causal_mask(cu_seqlens, dtype):
    got = ops.block_diagonal_causal_mask(cu_seqlens, dtype)
    if is_meta(cu_seqlens):
        return None
    cu = listed(cu_seqlens)
    total = cu[-1] if cu else 0
    seq = torch.zeros(total, dtype=torch.long)
    for n in range(len(cu) - 1):
        seq[cu[n] : cu[n + 1]] = n
    pos = torch.arange(total)
    allowed = (seq[:, None] == seq[None, :]) & (pos[None, :] <= pos[:, None])
    want = torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)
    if not torch.equal(got.cpu()[0, 0], want):
        return "block_diagonal_causal_mask differs from the reference"
    return None


def packed_merge(input_ids, weight, features, placeholder_ids):
    out = ops.packed_merge(input_ids, weight, features, placeholder_ids)
    if weight.device.type == "meta":
        want = (*input_ids.shape, weight.shape[1])
        return None if tuple(out.shape) == want else f"packed_merge: shape {tuple(out.shape)}"
    cpu = [f.cpu() for f in features]
    want = reference_merge(input_ids.cpu(), weight.cpu(), cpu, placeholder_ids)
    return None if torch.equal(out.cpu(), want) else "packed_merge differs from the reference"


CHECKS = {f.__name__: f for f in (varlen_metadata, plan_packs, pad_varlen, unpad_varlen,
                                  block_diagonal_causal_mask, packed_merge)}  # fmt: skip


def run(case: dict) -> tuple[str, str]:
    device = case.pop("device")
    check = CHECKS[case.pop("op")]
    try:
        problem = check(**{k: to(v, device) for k, v in case.items()})
    except DOCUMENTED as exc:
        return "raised", f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        return "other", "".join(traceback.format_exception(exc))
    return ("wrong", problem) if problem else ("ok", "")


def main() -> None:
    torch.set_num_threads(1)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(8):
        case = pickle.loads(stdin.read(struct.unpack("<Q", header)[0]))
        reply = pickle.dumps(run(case))
        stdout.write(struct.pack("<Q", len(reply)) + reply)
        stdout.flush()


if __name__ == "__main__":
    main()

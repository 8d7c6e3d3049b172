"""``mmgen bench merge``: the fused packed embedding merge against the paths it replaces.

    mmgen bench merge            # T=16384, H=2048, V=32000, fp32 and bf16, 2 threads
    mmgen bench merge --small    # a few seconds
    mmgen bench merge --device cuda   # on the GPU: GB/s also as a share of the device's peak

Paths, all on the same inputs (25% placeholder tokens in runs of 256-576):
  hf              embedding, expanded bool mask, count check, masked_scatter (LLaVA-style)
  index           embedding, then index_copy_ of the features with precomputed positions
  index-prealloc  the index path into a preallocated output reused every call (index_select
                  out=, index_copy_); fwd+bwd: its backward by hand into preallocated gradients
                  (zero_, index_add_ over all positions with placeholders sent to a spare row,
                  index_select out=): no autograd, no fresh memory
  packed_merge    mmgen.ops.packed_merge, one pass (large outputs reuse its host buffer cache)
  copy            allocate an output-sized tensor and copy bytes into it
  copy-prealloc   copy the output's bytes into a preallocated buffer: the memory-bandwidth floor

packed_merge reuses freed buffers (``csrc/cpu/host_cache.h``), so the ``-prealloc`` paths are the
like-for-like baselines; ``hf``, ``index`` and ``copy`` allocate fresh pages, as eager torch does.
torch.compile of the index path or of a ``torch.where`` gather does not help here: its output is
allocated fresh each call (2.5-4x slower than index-prealloc at the default size here).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from mmgen.bench.table import emit, time_fn
from mmgen.constants import default_placeholder_id
from mmgen.ops import packed_merge

PLACEHOLDER = default_placeholder_id(0)
BASELINES = ("hf", "index", "index-prealloc", "copy", "copy-prealloc")  # the x columns
COLUMNS = ("dtype", "pass", "path", "ms", "GB/s", *(f"x {name}" for name in BASELINES))
ORDER = ("hf", "index", "index-prealloc", "packed_merge", "copy", "copy-prealloc")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Inputs:
    input_ids: torch.Tensor
    weight: torch.Tensor
    features: torch.Tensor
    is_placeholder: torch.Tensor
    text_ids: torch.Tensor  # input_ids with placeholders replaced by 0 (for the baselines)
    positions: torch.Tensor  # placeholder positions (the index path's precomputed indices)
    spare_ids: torch.Tensor  # input_ids with placeholders sent to row V (a spare gradient row)
    grad: torch.Tensor


def make_inputs(
    tokens: int, hidden: int, vocab: int, dtype: torch.dtype, seed: int = 0, device: str = "cpu"
) -> Inputs:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (tokens,), generator=gen)
    # a 256-576 placeholder run in every 4x-longer stretch: ~25% placeholder tokens
    t = 0
    while t < tokens:
        run = int(torch.randint(256, 577, (), generator=gen))
        gap = 3 * run
        ids[t + gap : t + gap + run] = PLACEHOLDER
        t += gap + run
    is_placeholder = ids == PLACEHOLDER
    n = int(is_placeholder.sum())
    return Inputs(
        input_ids=ids.to(device),
        weight=torch.randn(vocab, hidden, generator=gen).to(device, dtype),
        features=torch.randn(n, hidden, generator=gen).to(device, dtype),
        is_placeholder=is_placeholder.to(device),
        text_ids=ids.masked_fill(is_placeholder, 0).to(device),
        positions=is_placeholder.nonzero().squeeze(1).to(device),
        spare_ids=ids.masked_fill(is_placeholder, vocab).to(device),
        grad=torch.randn(tokens, hidden, generator=gen).to(device, dtype),
    )


def hf_merge(x: Inputs, weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    mask = x.input_ids == PLACEHOLDER
    embeds = F.embedding(x.input_ids.masked_fill(mask, 0), weight)
    if int(mask.sum()) != features.shape[0]:  # the count check (a host sync on GPU)
        raise ValueError("placeholder count mismatch")
    return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), features)


def index_merge(x: Inputs, weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return F.embedding(x.text_ids, weight).index_copy_(0, x.positions, features)


def fused_merge(x: Inputs, weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return packed_merge(x.input_ids, weight, [features], [PLACEHOLDER])


PATHS = {"hf": hf_merge, "index": index_merge, "packed_merge": fused_merge}


class Prealloc:
    """The index path as a competent user writes it for the fused op's conditions: every output
    and gradient lives in a buffer allocated once and reused (as the op's host cache does)."""

    def __init__(self, x: Inputs) -> None:
        self.x = x
        self.out = torch.empty_like(x.grad)
        vocab, hidden = x.weight.shape
        # one spare row takes the placeholder positions' gradient: no gather of the text rows
        self.grad_table = x.weight.new_empty(vocab + 1, hidden)
        self.grad_features = torch.empty_like(x.features)

    def forward(self) -> torch.Tensor:
        x = self.x
        torch.index_select(x.weight, 0, x.text_ids, out=self.out)
        return self.out.index_copy_(0, x.positions, x.features)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x
        self.forward()
        self.grad_table.zero_()  # as zero_grad(set_to_none=False) keeps .grad and zeroes it
        self.grad_table.index_add_(0, x.spare_ids, x.grad)
        torch.index_select(x.grad, 0, x.positions, out=self.grad_features)
        return self.grad_table[:-1], self.grad_features


def measure(x: Inputs, rounds: int) -> dict[tuple[str, str], float]:
    """Median ms per (pass, path); checks first that every path gives the same output (and the
    hand-written backward the same gradients as autograd's)."""
    prealloc = Prealloc(x)
    weight = x.weight.detach().requires_grad_()
    features = x.features.detach().requires_grad_()

    def train_step(fn):
        # autograd.grad returns fresh grads instead of accumulating into .grad
        return torch.autograd.grad(fn(x, weight, features), (weight, features), x.grad)

    _check(x, prealloc, train_step)
    source, buffer = x.grad.clone(), torch.empty_like(x.grad)
    steps = {("fwd", name): partial(fn, x, x.weight, x.features) for name, fn in PATHS.items()}
    steps["fwd", "index-prealloc"] = prealloc.forward
    steps["fwd", "copy"] = lambda: torch.empty_like(source).copy_(source)
    steps["fwd", "copy-prealloc"] = partial(buffer.copy_, source)
    steps |= {("fwd+bwd", name): partial(train_step, fn) for name, fn in PATHS.items()}
    steps["fwd+bwd", "index-prealloc"] = prealloc.train_step
    if x.grad.is_cuda:  # kernels run asynchronously: time each call until its work is done
        steps = {key: partial(_synchronized, step) for key, step in steps.items()}
    for step in steps.values():
        step()  # warm-up
    # round-robin: load from other users of the machine hits every path alike, so ratios hold
    samples = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            samples[key].append(time_fn(step, warmup=0, repeat=1))
    return {key: statistics.median(values) for key, values in samples.items()}


def _synchronized(step):
    result = step()
    torch.cuda.synchronize()
    return result


def _check(x: Inputs, prealloc: Prealloc, train_step) -> None:
    reference = hf_merge(x, x.weight, x.features)
    outputs = {name: fn(x, x.weight, x.features) for name, fn in PATHS.items()}
    outputs["index-prealloc"] = prealloc.forward()
    for name, output in outputs.items():
        if not torch.equal(output, reference):
            raise AssertionError(f"bench merge: path {name!r} disagrees with the hf path")
    expected = train_step(fused_merge)
    for what, got, want in zip(("table", "features"), prealloc.train_step(), expected, strict=True):
        # index_add_ sums a repeated id's rows in the table's dtype, the op in fp32: rounding
        torch.testing.assert_close(got, want, msg=f"bench merge: index-prealloc {what} grad")


def traffic(x: Inputs, step: str) -> int:
    """Bytes a perfect implementation must move: read each output row once, write it once; the
    backward also reads the output grad and writes the table's and the features' grads."""
    rows = x.grad.numel() * x.grad.element_size()
    ids = x.input_ids.numel() * x.input_ids.element_size()
    forward = 2 * rows + ids
    if step == "fwd":
        return forward
    grads = (x.weight.numel() + x.features.numel()) * x.weight.element_size()
    return forward + rows + ids + grads


def rows_for(
    dtype_name: str, x: Inputs, ms: dict[tuple[str, str], float], peak_gbps: float | None = None
) -> list[list]:
    rows = []
    for (step, path), value in ms.items():
        gbps = traffic(x, step) / value / 1e6
        ratios = [ms[step, b] / value if (step, b) in ms else "-" for b in BASELINES]
        share = [100 * gbps / peak_gbps] if peak_gbps else []
        rows.append([dtype_name, step, path, value, gbps, *share, *ratios])
    return sorted(rows, key=lambda r: (r[1] != "fwd", ORDER.index(r[2])))


def peak_bandwidth_gbps(device: int | str = 0) -> float:
    """The GPU's peak memory bandwidth in GB/s (from its memory clock and bus width)."""
    props = torch.cuda.get_device_properties(device)
    return memory_bandwidth_gbps(props.memory_clock_rate, props.memory_bus_width)


def memory_bandwidth_gbps(memory_clock_khz: float, bus_width_bits: int) -> float:
    """Double data rate: two transfers of the bus width per memory clock (an H100 SXM's 2619 MHz
    HBM3 on a 5120-bit bus gives 3352 GB/s)."""
    return 2 * memory_clock_khz * 1e3 * bus_width_bits / 8 / 1e9


def run(
    *,
    tokens: int,
    hidden: int,
    vocab: int,
    threads: int,
    dtypes: list[str],
    as_json: bool,
    device: str = "cpu",
) -> str:
    """The table; on ``device="cuda"`` every path runs on the current GPU, timed until its work
    is done, with a ``% peak`` column: achieved GB/s against the device's peak bandwidth."""
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("bench merge: --device cuda, but no CUDA GPU is visible")
    peak = peak_bandwidth_gbps() if cuda else None
    columns = (*COLUMNS[:5], "% peak", *COLUMNS[5:]) if cuda else COLUMNS
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    rounds = 11 if tokens * hidden >= 1 << 22 else 31  # small cases are cheap: more samples
    try:
        for name in dtypes:
            x = make_inputs(tokens, hidden, vocab, DTYPES[name], device=device)
            rows += rows_for(name, x, measure(x, rounds), peak)
            placeholders = int(x.is_placeholder.sum())
    finally:
        torch.set_num_threads(before)  # the caller's setting (tests run it in-process)
    where = {"device": torch.cuda.get_device_name(), "peak_GB/s": round(peak)} if cuda else {}
    return emit(
        "packed embedding merge (median ms; x NAME = that path's time / this path's time)",
        columns,
        rows,
        as_json=as_json,
        tokens=tokens,
        hidden=hidden,
        vocab=vocab,
        placeholder_tokens=f"{placeholders} ({placeholders / max(tokens, 1):.0%})",
        threads=threads,
        torch=torch.__version__,
        **where,
    )

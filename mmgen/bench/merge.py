"""``mmgen bench merge``: the fused packed embedding merge against the paths it replaces.

    mmgen bench merge            # T=16384, H=2048, V=32000, fp32 and bf16, 2 threads
    mmgen bench merge --small    # a few seconds

Paths, all on the same inputs (25% placeholder tokens in runs of 256-576):
  hf            embedding, expanded bool mask, count check, masked_scatter (LLaVA-style)
  index         embedding, then index_copy_ of the features with precomputed positions
  packed_merge  mmgen.ops.packed_merge, one pass
  copy          allocate an output-sized tensor and copy bytes into it: the memory-bandwidth limit
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
COLUMNS = ("dtype", "pass", "path", "ms", "GB/s", "x hf", "x index", "x copy")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Inputs:
    input_ids: torch.Tensor
    weight: torch.Tensor
    features: torch.Tensor
    is_placeholder: torch.Tensor
    text_ids: torch.Tensor  # input_ids with placeholders replaced by 0 (for the baselines)
    positions: torch.Tensor  # placeholder positions (the index path's precomputed indices)
    grad: torch.Tensor


def make_inputs(tokens: int, hidden: int, vocab: int, dtype: torch.dtype, seed: int = 0) -> Inputs:
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
        input_ids=ids,
        weight=torch.randn(vocab, hidden, generator=gen).to(dtype),
        features=torch.randn(n, hidden, generator=gen).to(dtype),
        is_placeholder=is_placeholder,
        text_ids=ids.masked_fill(is_placeholder, 0),
        positions=is_placeholder.nonzero().squeeze(1),
        grad=torch.randn(tokens, hidden, generator=gen).to(dtype),
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


def measure(x: Inputs, rounds: int) -> dict[tuple[str, str], float]:
    """Median ms per (pass, path); checks first that every path gives the same output."""
    reference = hf_merge(x, x.weight, x.features)
    for name, fn in PATHS.items():
        if not torch.equal(fn(x, x.weight, x.features), reference):
            raise AssertionError(f"bench merge: path {name!r} disagrees with the hf path")
    del reference
    weight = x.weight.detach().requires_grad_()
    features = x.features.detach().requires_grad_()
    source = x.grad.clone()

    def train_step(fn):
        # autograd.grad returns fresh grads instead of accumulating into .grad
        return torch.autograd.grad(fn(x, weight, features), (weight, features), x.grad)

    steps = {("fwd", name): partial(fn, x, x.weight, x.features) for name, fn in PATHS.items()}
    steps["fwd", "copy"] = lambda: torch.empty_like(source).copy_(source)
    steps |= {("fwd+bwd", name): partial(train_step, fn) for name, fn in PATHS.items()}
    for step in steps.values():
        step()  # warm-up
    # round-robin: load from other users of the machine hits every path alike, so ratios hold
    samples = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            samples[key].append(time_fn(step, warmup=0, repeat=1))
    return {key: statistics.median(values) for key, values in samples.items()}


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


def rows_for(dtype_name: str, x: Inputs, ms: dict[tuple[str, str], float]) -> list[list]:
    rows = []
    for (step, path), value in ms.items():
        gbps = traffic(x, step) / value / 1e6
        hf, index, copy = (ms.get((step, p)) for p in ("hf", "index", "copy"))
        ratios = [ref / value if ref else "-" for ref in (hf, index, copy)]
        rows.append([dtype_name, step, path, value, gbps, *ratios])
    order = {"hf": 0, "index": 1, "packed_merge": 2, "copy": 3}
    return sorted(rows, key=lambda r: (r[1] != "fwd", order[r[2]]))


def run(
    *, tokens: int, hidden: int, vocab: int, threads: int, dtypes: list[str], as_json: bool
) -> str:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    rounds = 11 if tokens * hidden >= 1 << 22 else 31  # small cases are cheap: more samples
    try:
        for name in dtypes:
            x = make_inputs(tokens, hidden, vocab, DTYPES[name])
            rows += rows_for(name, x, measure(x, rounds))
            placeholders = int(x.is_placeholder.sum())
    finally:
        torch.set_num_threads(before)  # the caller's setting (tests run it in-process)
    return emit(
        "packed embedding merge (median ms; x = speed relative to that path)",
        COLUMNS,
        rows,
        as_json=as_json,
        tokens=tokens,
        hidden=hidden,
        vocab=vocab,
        placeholder_tokens=f"{placeholders} ({placeholders / max(tokens, 1):.0%})",
        threads=threads,
        torch=torch.__version__,
    )

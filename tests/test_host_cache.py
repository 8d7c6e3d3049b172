"""The host buffer cache behind large CPU op outputs (csrc/cpu/host_cache.h)."""

import os
import subprocess
import sys

import torch

from mmgen.ops import empty_cache, packed_merge

PLACEHOLDER = -1000


def _case(seed: int, tokens: int = 4096, hidden: int = 1024):
    """Inputs whose fp32 output (16 MiB) is large enough to come from the cache."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (tokens,), generator=gen)
    ids[100:400] = PLACEHOLDER
    weight = torch.randn(64, hidden, generator=gen)
    features = torch.randn(300, hidden, generator=gen)
    expected = weight[ids.clamp(min=0)]
    expected[100:400] = features
    return (ids, weight, [features], [PLACEHOLDER]), expected


def test_a_freed_output_is_reused_and_rewritten():
    args, expected = _case(0)
    first = packed_merge(*args)
    pointer = first.data_ptr()
    del first
    args, expected = _case(1)
    second = packed_merge(*args)
    assert second.data_ptr() == pointer  # the freed buffer came back...
    assert torch.equal(second, expected)  # ...and every row was written again


def test_live_outputs_never_share_memory():
    outputs = [(packed_merge(*args), expected) for args, expected in map(_case, range(3))]
    pointers = {out.data_ptr() for out, _ in outputs}
    assert len(pointers) == len(outputs)
    for out, expected in outputs:
        assert torch.equal(out, expected)


def test_empty_cache_frees_unused_buffers():
    args, _ = _case(0)
    out = packed_merge(*args)
    nbytes = out.nbytes
    del out
    assert empty_cache() >= nbytes
    assert empty_cache() == 0


def _run(code: str, cache_mb: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMGEN_CPU_CACHE_MB": cache_mb}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_cache_size_zero_turns_it_off():
    code = (
        "import torch; from mmgen.ops import empty_cache, packed_merge\n"
        "w = torch.randn(8, 1024)\n"
        "out = packed_merge(torch.zeros(4096, dtype=torch.long), w, [], [])\n"
        "del out\n"
        "print(empty_cache())\n"
    )
    result = _run(code, "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_bad_cache_size_is_a_clear_error():
    code = (
        "import torch; from mmgen.ops import packed_merge\n"
        "packed_merge(torch.zeros(4096, dtype=torch.long), torch.randn(8, 1024), [], [])\n"
    )
    result = _run(code, "lots")
    assert result.returncode != 0
    assert "MMGEN_CPU_CACHE_MB must be a whole number of MiB >= 0, got 'lots'" in result.stderr

"""The GPU check's steps that are no pytest file; each prints ``RESULT {json}`` lines.

    python -m mmgen.gpucheck.checks device      # the GPU, its peak bandwidth, the CUDA build
    python -m mmgen.gpucheck.checks sync        # the step's merge and varlen calls: no host sync
    python -m mmgen.gpucheck.checks ddp         # a packed step through DDP over nccl
    python -m mmgen.gpucheck.checks demo --device cuda --out build/gpu-check/demo

Exit status 1 when a check fails, with one line saying what failed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mmgen.gpucheck.summary import RESULT_PREFIX


class CheckFailed(Exception):
    pass


def report(**values) -> None:
    print(RESULT_PREFIX + json.dumps(values), flush=True)


def _need_gpu():
    import torch

    if not torch.cuda.is_available():
        raise CheckFailed("no CUDA GPU is visible to torch")
    return torch


# --- device -------------------------------------------------------------------------------------


def device() -> None:
    torch = _need_gpu()
    from mmgen.bench.merge import peak_bandwidth_gbps
    from mmgen.ops.extension import load

    load()
    info = json.loads(torch.ops.mmgen._build_info())
    props = torch.cuda.get_device_properties(0)
    report(
        device=props.name,
        capability=f"{props.major}.{props.minor}",
        memory_GiB=round(props.total_memory / 2**30, 1),
        SMs=props.multi_processor_count,
        peak_GB_s=round(peak_bandwidth_gbps(0)),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        mmgen_cuda=info["cuda"],
        mmgen_arch=info.get("cuda_arch"),
    )
    if not info["cuda"]:
        raise CheckFailed("mmgen._C was built without its CUDA kernels (the build step)")


# --- host syncs ---------------------------------------------------------------------------------


def sync_free(fn: Callable[[], object]) -> str | None:
    """None when ``fn`` makes no host synchronization, else the error torch raised."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    except RuntimeError as exc:
        return str(exc).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return None


def sync_cases() -> dict[str, Callable[[], object]]:
    """The training step's calls as a CUDA graph would capture them: every input already on the
    GPU, every size a host int, ``validate=False`` where the collator built the metadata."""
    torch = _need_gpu()
    from mmgen import ops
    from mmgen.gpucheck.reference import merge_case
    from mmgen.model.attention import packed_attention_kwargs

    case = merge_case("frequent", dtype=torch.bfloat16).to("cuda")
    weight = case.weight.clone().requires_grad_()
    features = [f.clone().requires_grad_() for f in case.features]
    grad_out = torch.randn(*case.input_ids.shape, weight.shape[1], device="cuda").bfloat16()
    # a pack as the collator gives it: T = 17, max_seqlen = 9 host ints, the tensors on the GPU
    total, max_seqlen = 17, 9
    lengths = torch.tensor([5, 0, 9, 3], device="cuda")
    cu_seqlens = torch.tensor([0, 5, 5, 14, 17], dtype=torch.int32, device="cuda")
    x = torch.randn(total, 8, device="cuda", requires_grad=True)
    padded = torch.randn(4, max_seqlen, 8, device="cuda", requires_grad=True)

    def merge_forward_backward():
        out = ops.packed_merge(case.input_ids, weight, features, case.placeholder_ids,
                               validate=False)  # fmt: skip
        torch.autograd.grad(out, [weight, *features], grad_out)

    def pad_forward_backward():
        out = ops.pad_varlen(x, cu_seqlens, max_seqlen, validate=False)
        torch.autograd.grad(out, x, torch.ones_like(out))

    def unpad_forward_backward():
        out = ops.unpad_varlen(padded, lengths, total=total, validate=False)
        torch.autograd.grad(out, padded, torch.ones_like(out))

    def attention_kwargs(impl):
        return lambda: packed_attention_kwargs(
            cu_seqlens, max_seqlen, impl, dtype=torch.bfloat16, total=total, validate=False
        )

    return {
        "packed_merge fwd+bwd (validate=False)": merge_forward_backward,
        "varlen_metadata (total, max_seqlen, validate=False)": lambda: ops.varlen_metadata(
            lengths, total=total, max_seqlen=max_seqlen, validate=False
        ),
        "pad_varlen fwd+bwd (validate=False)": pad_forward_backward,
        "unpad_varlen fwd+bwd (total, validate=False)": unpad_forward_backward,
        "block_diagonal_causal_mask (total, validate=False)": lambda: (
            ops.block_diagonal_causal_mask(cu_seqlens, total=total, validate=False)
        ),
        "packed_attention_kwargs sdpa (the model's packed step)": attention_kwargs("sdpa"),
        "packed_attention_kwargs flash_attention_2": attention_kwargs("flash_attention_2"),
    }


def sync_control() -> Callable[[], object]:
    """A call that must synchronize (the checked mask reads ``cu_seqlens`` on the host): if the
    detector sees no sync in it, it would see none anywhere."""
    torch = _need_gpu()
    from mmgen import ops

    cu_seqlens = torch.tensor([0, 5, 5, 14, 17], dtype=torch.int32, device="cuda")
    return lambda: ops.block_diagonal_causal_mask(cu_seqlens)


def sync() -> None:
    cases = sync_cases()
    control = sync_control()
    for fn in (*cases.values(), control):
        fn()  # warm-up: first calls load kernels and may allocate, which is no sync of ours
    failed = []
    for name, fn in cases.items():
        error = sync_free(fn)
        report(op=name, sync_free=error is None, error=error or "")
        if error:
            failed.append(name)
    control_error = sync_free(control)
    report(
        op="control: block_diagonal_causal_mask (validate=True)",
        sync_free=control_error is None,
        expected_sync=True,
        error=control_error or "",
    )
    if failed:
        raise CheckFailed(f"host synchronization in: {', '.join(failed)}")
    if control_error is None:
        raise CheckFailed(
            "the sync detector saw no sync in a call that reads cu_seqlens on the host"
        )


# --- DDP over nccl ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp() -> None:
    """A packed step (merge, a linear layer, a loss) through DDP over nccl in a one-process
    group: its loss and gradients equal the same step without DDP."""
    torch = _need_gpu()
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mmgen import ops
    from mmgen.gpucheck.reference import merge_case

    class Packed(torch.nn.Module):
        def __init__(self, case):
            super().__init__()
            self.embed = torch.nn.Parameter(case.weight.clone())
            self.head = torch.nn.Linear(case.weight.shape[1], 5)

        def forward(self, ids, features, placeholder_ids):
            rows = ops.packed_merge(ids, self.embed, features, placeholder_ids)
            return self.head(rows).logsumexp(-1).mean()

    case = merge_case("mixed").to("cuda")
    torch.manual_seed(0)
    plain = Packed(case).cuda()
    twin = Packed(case).cuda()
    twin.load_state_dict(plain.state_dict())
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
    try:
        wrapped = DistributedDataParallel(twin, device_ids=[0])
        losses = []
        for model in (plain, wrapped):
            loss = model(case.input_ids, case.features, case.placeholder_ids)
            loss.backward()
            losses.append(loss.item())
        torch.cuda.synchronize()
    finally:
        dist.destroy_process_group()
    worst = max(
        (a.grad - b.grad).abs().max().item()
        for a, b in zip(plain.parameters(), twin.parameters(), strict=True)
    )
    report(backend="nccl", world_size=1, loss=losses[0], loss_ddp=losses[1], max_grad_diff=worst)
    if losses[0] != losses[1] or worst > 1e-6:
        raise CheckFailed(f"DDP over nccl differs: loss {losses}, max grad diff {worst}")


# --- the demo -----------------------------------------------------------------------------------

DEMO_DATA = ["--train", "1000", "--eval", "50", "--test", "100"]  # scripts/demo.sh's CI size


def _mmgen(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "mmgen", *args], cwd=cwd, check=True)


def demo_figures(metrics: Path) -> dict:
    """Held-out accuracy (the last ``test`` record) and mean training tokens/s of a run's
    metrics.jsonl."""
    if not metrics.is_file():
        raise CheckFailed(f"the run wrote no {metrics}")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    speeds = [
        r["tokens_per_s"] for r in records if r.get("kind") == "train" and "tokens_per_s" in r
    ]
    tests = [r for r in records if r.get("kind") == "test" and "accuracy" in r]
    if not speeds or not tests:
        raise CheckFailed(f"{metrics} holds no training speed or held-out accuracy")
    return {"accuracy": tests[-1]["accuracy"], "tokens_per_s": sum(speeds) / len(speeds)}


def demo(device_name: str, out: Path) -> None:
    """scripts/demo.sh's project at CI size (made once in ``out``), trained on ``device_name``:
    on the GPU with bf16 autocast."""
    if device_name == "cuda":
        _need_gpu()
    out = out.resolve()
    if not (out / "configs" / "train.yaml").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        _mmgen("init", str(out), cwd=out.parent)
        _mmgen("new-modality", "audio", cwd=out)
        _mmgen("demo-data", "audio", *DEMO_DATA, cwd=out)
    run = out / "runs" / device_name
    precision = "bf16" if device_name == "cuda" else "fp32"
    began = time.monotonic()
    _mmgen(
        "train", "configs/train.yaml", "--overwrite",
        "--set", f"device={device_name}", "--set", f"precision={precision}",
        "--set", f"output_dir={run.relative_to(out)}",
        "--set", "eval.every=null", "--set", "checkpoint.every=null",
        cwd=out,
    )  # fmt: skip
    figures = demo_figures(run / "metrics.jsonl")
    other = out / "runs" / ("cpu" if device_name == "cuda" else "cuda") / "metrics.jsonl"
    versus = {}
    if device_name == "cuda" and other.is_file():
        cpu = demo_figures(other)
        versus = {"cpu_accuracy": cpu["accuracy"],
                  "x_cpu_tokens_per_s": figures["tokens_per_s"] / cpu["tokens_per_s"]}  # fmt: skip
    report(device=device_name, precision=precision, **figures,
           seconds=round(time.monotonic() - began, 1), **versus)  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmgen.gpucheck.checks")
    sub = parser.add_subparsers(dest="check", required=True)
    sub.add_parser("device")
    sub.add_parser("sync")
    sub.add_parser("ddp")
    demo_parser = sub.add_parser("demo")
    demo_parser.add_argument("--device", choices=["cpu", "cuda"], required=True)
    demo_parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.check == "demo":
            demo(args.device, args.out)
        else:
            {"device": device, "sync": sync, "ddp": ddp}[args.check]()
    except (CheckFailed, subprocess.CalledProcessError) as exc:
        print(f"gpu check {args.check}: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

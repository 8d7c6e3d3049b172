"""``mmgen bench ...``: side-by-side speed tables (one subcommand per benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Benchmarks that print a side-by-side table from one run.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# --- merge (fused packed embedding merge) ---
@app.command("merge")
def merge(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    small: Annotated[
        bool, typer.Option("--small", help="A small case (T=2048, H=512, V=8000): seconds.")
    ] = False,
    tokens: Annotated[int | None, typer.Option(help="Packed tokens T (default 16384).")] = None,
    hidden: Annotated[int | None, typer.Option(help="Hidden size H (default 2048).")] = None,
    vocab: Annotated[int | None, typer.Option(help="Vocabulary size V (default 32000).")] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    dtype: Annotated[
        list[str] | None, typer.Option(help="fp32 or bf16; repeat for both (default both).")
    ] = None,
    device: Annotated[
        str, typer.Option(help="cpu, or cuda: the current GPU, with GB/s against its peak.")
    ] = "cpu",
) -> None:
    """packed_merge vs the HF-style, index and copy paths, fresh and preallocated; fwd, fwd+bwd."""
    from mmgen.bench.merge import DTYPES, run

    if device not in ("cpu", "cuda"):
        raise typer.BadParameter(f"--device must be cpu or cuda, got {device!r}")

    dtypes = dtype or list(DTYPES)
    unknown = sorted(set(dtypes) - set(DTYPES))
    if unknown:
        raise typer.BadParameter(f"unknown dtype {unknown}; choose from {sorted(DTYPES)}")
    default = (2048, 512, 8000) if small else (16384, 2048, 32000)
    t, h, v = (
        given or fallback for given, fallback in zip((tokens, hidden, vocab), default, strict=True)
    )
    try:
        table = run(
            tokens=t, hidden=h, vocab=v, threads=threads, dtypes=dtypes, as_json=as_json,
            device=device,
        )  # fmt: skip
    except RuntimeError as exc:  # no GPU visible
        raise typer.BadParameter(str(exc)) from None
    typer.echo(table)


# --- pack (token-budget packing) ---
@app.command("pack")
def pack(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    small: bool = typer.Option(False, "--small", help="20,000 samples instead of 1,000,000."),
    num_samples: int | None = typer.Option(
        None, "-n", "--num-samples", min=1, help="Samples per length distribution (default 1M)."
    ),
    capacity: int | None = typer.Option(
        None,
        "--capacity",
        min=1,
        help="Tokens per pack for both distributions (default 2048 for gamma, 8192 lognormal).",
    ),
) -> None:
    """plan_packs vs pad-to-longest, next fit, Python bisect BFD and TRL; packed metadata."""
    from mmgen.bench.pack import run

    n = num_samples or (20_000 if small else 1_000_000)
    typer.echo(run(num_samples=n, capacity=capacity, as_json=as_json))


# --- step (packed vs padded training step) ---
@app.command("step")
def step(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    small: bool = typer.Option(
        False, "--small", help="48 samples, 1024-token packs, a 64-wide LLM: a few seconds."
    ),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Samples in the mix (default 256; 48 with --small)."
    ),
    capacity: int | None = typer.Option(
        None, "--capacity", min=64, help="Tokens per packed step (default 4096; 1024 --small)."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Samples per padded step (default: capacity / mean sample length).",
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Timed passes over all batches per layout (default 3)."
    ),
    hidden: int | None = typer.Option(
        None, "--hidden", min=8, help="LLM hidden size (default 128; 64 with --small)."
    ),
    layers: int | None = typer.Option(None, "--layers", min=1, help="LLM layers (default 2)."),
    threads: int = typer.Option(
        1,
        "--threads",
        min=1,
        help="torch CPU threads (1: beside other jobs on 2 cores, 2 threads ran up to 50x slower).",
    ),
) -> None:
    """One forward + backward of a tiny MultimodalModel: packed vs padded (random and
    length-grouped batches), useful tokens/s."""
    from dataclasses import replace

    from mmgen.bench.step import SMALL, Sizes, run

    sizes = SMALL if small else Sizes()
    given = {"samples": samples, "capacity": capacity, "batch_size": batch_size, "rounds": rounds,
             "hidden": hidden, "layers": layers}  # fmt: skip
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    typer.echo(run(sizes, threads=threads, as_json=as_json))


# --- tokens (audio embeddings: whole window vs real length) ---
@app.command("tokens")
def tokens(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    small: bool = typer.Option(
        False, "--small", help="16 clips, 2048-token packs, a 64-wide LLM: a few seconds."
    ),
    clips: int | None = typer.Option(
        None, "--clips", min=2, help="Clips in the mix (default 96; 16 with --small)."
    ),
    capacity: int | None = typer.Option(
        None, "--capacity", min=1024, help="Tokens per packed step (default 4096)."
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Timed passes over all packs per row (default 3)."
    ),
    hidden: int | None = typer.Option(
        None, "--hidden", min=8, help="LLM hidden size (default 256; 64 with --small)."
    ),
    layers: int | None = typer.Option(None, "--layers", min=1, help="LLM layers (default 4)."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads."),
) -> None:
    """Speech-like clips (1-30 s, lognormal around 5 s): LLM positions per clip and useful
    tokens/s of a packed step, a whole Whisper window per clip vs the real clip length."""
    from dataclasses import replace

    from mmgen.bench.tokens import SMALL, Sizes, run

    sizes = SMALL if small else Sizes()
    given = {"clips": clips, "capacity": capacity, "rounds": rounds, "hidden": hidden,
             "layers": layers}  # fmt: skip
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    typer.echo(run(sizes, threads=threads, as_json=as_json))


# --- train (packed vs padded training steps) ---
@app.command("train")
def train(
    config: Annotated[Path, typer.Argument(help="A training config (configs/train.yaml).")],
    steps: Annotated[int, typer.Option("--steps", min=4, help="Optimizer steps per layout.")] = 60,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="Runs per layout, the layouts taking turns.")
    ] = 1,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: dotted.key=value (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Training throughput of a config: packed vs padded batches, random and length-grouped."""
    from mmgen.bench.train import run

    typer.echo(run(config, steps=steps, overrides=overrides or [], as_json=as_json, rounds=rounds))


# --- predict (batched prediction vs one row at a time) ---
@app.command("predict")
def predict(
    model: Annotated[Path, typer.Argument(help="A run, checkpoint or model folder.")],
    data: Annotated[Path, typer.Argument(help="Rows to answer (e.g. the held-out split).")],
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows answered per path.")] = 200,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="mmgen predict's batch (its default).")
    ] = 32,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 8,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 2,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Turns of both paths.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """mmgen predict vs model.generate one row at a time: rows/s, identical greedy answers."""
    from mmgen.bench.predict import run

    typer.echo(run(model, data, rows=rows, batch_size=batch_size, max_new_tokens=max_new_tokens,
                   threads=threads, as_json=as_json, rounds=rounds))  # fmt: skip


# --- serve (concurrent clients vs sequential requests) ---
@app.command("serve")
def serve(
    model: Annotated[Path, typer.Argument(help="A run, checkpoint or model folder.")],
    data: Annotated[Path, typer.Argument(help="Rows whose questions become requests.")],
    requests: Annotated[int, typer.Option("--requests", min=1, help="Requests per way.")] = 64,
    clients: Annotated[int, typer.Option("--clients", min=2, help="Concurrent clients.")] = 8,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 8,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", min=1)] = 16,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 2,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Turns of both ways.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """mmgen serve with concurrent clients vs the same requests one at a time: requests/s."""
    from mmgen.bench.serve import run

    typer.echo(run(model, data, requests=requests, clients=clients, max_tokens=max_tokens,
                   max_batch_size=max_batch_size, threads=threads, as_json=as_json,
                   rounds=rounds))  # fmt: skip


# --- data (startup of the data side: full processing, cold scan, warm start) ---
@app.command("data")
def data(
    rows: Annotated[
        list[int] | None,
        typer.Option(
            "-n",
            "--rows",
            min=1,
            help="Dataset rows; repeat for several (default 1000, 10000, 100000; --small: 200,"
            " 1000).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Processes of the all-workers cold scan (default: every core)."
        ),
    ] = None,
    small: Annotated[
        bool, typer.Option("--small", help="200 and 1,000 rows, 200 media files each: ~1 min.")
    ] = False,
    full_sample: Annotated[
        int | None,
        typer.Option(
            "--full-sample",
            min=1,
            help="Rows full processing times at most; above, the rate of a random sample that"
            " size is extrapolated (default 2000; --small: 200).",
        ),
    ] = None,
    media_files: Annotated[
        int | None,
        typer.Option(
            "--media-files",
            min=1,
            help="Distinct audio files and image files written (default 4096; --small: 200);"
            " rows take them in turn.",
        ),
    ] = None,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds",
            min=1,
            help="Times the startups take turns per N; medians (load from other jobs hits each).",
        ),
    ] = 1,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Keep the synthetic data here (a later run reuses its media) instead"
            " of a temporary folder.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """A training run's data startup against N rows of real audio and image files.

    Full processing, the cold metadata scan (1 worker, all workers) and the warm start.
    """
    import os

    from mmgen.bench import data as bench

    typer.echo(
        bench.run(
            rows=rows or list(bench.SMALL_ROWS if small else bench.ROWS),
            workers=workers or len(os.sched_getaffinity(0)),
            full_sample=full_sample or (bench.SMALL_FULL_SAMPLE if small else bench.FULL_SAMPLE),
            media_files=media_files or (bench.SMALL_MEDIA_FILES if small else bench.MEDIA_FILES),
            rounds=rounds,
            directory=directory,
            as_json=as_json,
        )
    )

"""Options shared by the commands that generate (predict, eval, chat, serve): the model to load
and how to decode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

Run = Annotated[
    Path, typer.Argument(help="A run folder, a checkpoint folder or a saved/exported model.")
]
Checkpoint = Annotated[
    str | None,
    typer.Option(help="With a run folder: 'latest', a step number or a checkpoint's name."),
]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if any).")]
Dtype = Annotated[str | None, typer.Option(help="fp32, bf16 or fp16 (default: bf16 on cuda).")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per answer.")]
Temperature = Annotated[
    float, typer.Option(min=0.0, help="0: greedy; else sample at this temperature.")
]
TopP = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling.")]
TopK = Annotated[int, typer.Option("--top-k", min=0, help="Sample among the k likeliest (0: all).")]
RepetitionPenalty = Annotated[
    float, typer.Option("--repetition-penalty", min=0.0, help="> 1 discourages repeats.")
]
Stop = Annotated[
    list[str] | None, typer.Option("--stop", help="A string that ends an answer (repeatable).")
]
Seed = Annotated[int | None, typer.Option(help="Seeds sampling (reproducible samples).")]
IgnoreEos = Annotated[
    bool, typer.Option("--ignore-eos", help="Always generate --max-new-tokens (benchmarks).")
]


def generation_options(
    max_new_tokens: int, temperature: float, top_p: float, top_k: int,
    repetition_penalty: float, stop: list[str] | None, seed: int | None,
    ignore_eos: bool = False,
) -> Any:  # fmt: skip
    from mmgen.model.generation import GenerationOptions

    return GenerationOptions(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        repetition_penalty=repetition_penalty, stop=tuple(stop or ()), seed=seed,
        ignore_eos=ignore_eos,
    )  # fmt: skip


def load_model(run: Path, checkpoint: str | None, device: str | None, dtype: str | None) -> Any:
    from transformers.utils import logging as transformers_logging

    import mmgen

    transformers_logging.disable_progress_bar()  # per-file load bars
    return mmgen.load(run, checkpoint=checkpoint, device=device, dtype=dtype)

"""`mmgen chat RUN`: a multi-turn chat in the terminal (see mmgen/infer/chat.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from mmgen.cli._generation import (
    Checkpoint,
    Device,
    Dtype,
    MaxNewTokens,
    RepetitionPenalty,
    Run,
    Seed,
    Stop,
    Temperature,
    TopK,
    TopP,
    generation_options,
    load_model,
)


def chat(
    run: Run,
    system: Annotated[str | None, typer.Option(help="A system message opening the chat.")] = None,
    checkpoint: Checkpoint = None,
    device: Device = None,
    dtype: Dtype = None,
    max_new_tokens: MaxNewTokens = 256,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    top_k: TopK = 0,
    repetition_penalty: RepetitionPenalty = 1.0,
    stop: Stop = None,
    seed: Seed = None,
) -> None:
    """Chat with the model: answers stream as they are made. Attach media with /<modality> PATH
    (e.g. /audio clip.wav) or write the placeholder then the path (<image> x.png); /reset,
    /exit."""
    from rich.console import Console

    from mmgen.infer.chat import HELP, ChatSession

    console = Console(highlight=False, soft_wrap=True)  # paths stay whole
    options = generation_options(max_new_tokens, temperature, top_p, top_k, repetition_penalty,
                                 stop, seed)  # fmt: skip
    loaded = load_model(run, checkpoint, device, dtype)

    def show(piece: str) -> None:  # each piece of the answer as it is made
        console.print(piece, end="", markup=False)

    session = ChatSession(loaded, options, system=system, on_text=show)
    names = ", ".join(loaded.processor.names)
    console.print(f"[bold]mmgen chat[/] with {loaded.path} (modalities: {names})")
    console.print(f"[dim]{HELP}[/]")
    while True:
        try:
            line = console.input("[bold green]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line.strip().startswith("/") and line.strip():
            console.print("[bold blue]model>[/] ", end="")
        turn = session.handle(line)
        if turn.reply is not None:
            console.print()
        if turn.note is not None:
            style = "red" if turn.note.startswith("error:") else "dim"
            console.print(turn.note, style=style, markup=False)
        if turn.done:
            return

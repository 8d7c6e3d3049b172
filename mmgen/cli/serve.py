"""`mmgen serve RUN`: an OpenAI-compatible HTTP server (see mmgen/serve/app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli._generation import Checkpoint, Device, Dtype, Run, load_model


def serve(
    run: Run,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="The model id clients ask for.")
    ] = None,
    allowed_media_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--allowed-media-dir",
            help="A folder whose files requests may name (file: URLs, paths); repeatable."
            " Without one, media comes as base64 or data URLs only.",
        ),
    ] = None,
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", min=1, help="Most requests generated together.")
    ] = 16,
    batch_wait_ms: Annotated[
        float, typer.Option("--batch-wait-ms", min=0, help="How long a batch waits to fill.")
    ] = 5.0,
    max_request_mb: Annotated[
        float, typer.Option("--max-request-mb", min=0.001, help="Largest request body.")
    ] = 32.0,
    checkpoint: Checkpoint = None,
    device: Device = None,
    dtype: Dtype = None,
) -> None:
    """Serve the model behind the OpenAI API: GET /v1/models, POST /v1/chat/completions (text,
    image_url, input_audio and modality parts; stream: true for server-sent events)."""
    import uvicorn

    from mmgen.serve.app import create_app

    loaded = load_model(run, checkpoint, device, dtype)
    name = model_name or _default_name(run)
    app = create_app(
        loaded, model_name=name, allowed_media_dirs=allowed_media_dir or [],
        max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
    )  # fmt: skip
    typer.echo(f"serving {name!r} on http://{host}:{port}/v1 (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _default_name(run: Path) -> str:
    """The run folder's name (``runs/demo`` -> ``demo``)."""
    resolved = run.resolve()
    return resolved.parent.name if resolved.name == "model" else resolved.name

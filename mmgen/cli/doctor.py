"""`mmgen doctor`: is mmgen._C loaded and fresh, and which backends does each op have."""

from __future__ import annotations

import typer


def doctor() -> None:
    """Report torch, the compiled extension mmgen._C and its ops; exit 1 when it cannot load."""
    from mmgen.ops.extension import status

    info = status()
    typer.echo(f"torch            {info.torch_version}")
    if not info.loaded:
        typer.secho(f"mmgen._C         NOT LOADED: {info.error}", fg="red")
        typer.echo(f"rebuild with     {info.rebuild}")
        raise typer.Exit(1)
    typer.secho("mmgen._C         loaded", fg="green")
    build = info.build
    cuda = (
        f"CUDA {build['cuda_version']} for sm {build['cuda_arch']}"
        if build.get("cuda")
        else "CPU only"
    )
    typer.echo(f"built against    torch {build.get('torch_version')}")
    typer.echo(f"build kind       {cuda}{', debug' if build.get('debug') else ''}")
    typer.echo(f"source hash      {build.get('source_hash')}")
    typer.echo("ops              backends")
    for op, backends in info.backends.items():
        typer.echo(f"  {op:<30} {', '.join(backends) or 'missing'}")
    if info.stale_reasons:
        typer.secho(f"stale            {'; '.join(info.stale_reasons)}", fg="yellow")
        typer.echo(f"rebuild with     {info.rebuild}")

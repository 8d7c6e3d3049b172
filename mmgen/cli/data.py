"""``mmgen data ...``: a run's data, looked at before training (see mmgen/train/check.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli.app import fail

app = typer.Typer(
    help="Check a run's data before training on it.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

CONFIG_SUFFIXES = (".yaml", ".yml")


@app.command("check")
def check(
    target: Annotated[
        Path,
        typer.Argument(
            help="A training config (every split it names), or one data file or folder"
            " (checked as the training split of --config)."
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The training config whose tokenizer, modalities and data options check a"
            " data file (default: configs/train.yaml of the project around it).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: dotted.key=value (repeatable)."),
    ] = None,
    world_size: Annotated[
        int, typer.Option("--world-size", min=1, help="Ranks the projected epoch is split over.")
    ] = 1,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every problem (default: the first 50).")
    ] = False,
) -> None:
    """Check every row of a run's data with the code training uses.

    Prints each problem as file:line, a length histogram per split and modality, and the
    projected packing; builds (or reuses) the index training reads. Exit code 1 when a run with
    this config would stop on the data.
    """
    from transformers.utils import logging as transformers_logging

    from mmgen.train.check import check_data, render
    from mmgen.train.config import load_config

    transformers_logging.disable_progress_bar()  # the random-init encoder's save bars

    overrides = list(overrides or [])
    if target.suffix.lower() in CONFIG_SUFFIXES:
        if config is not None:
            raise fail(f"{target} is a config: give --config only with a data file")
        config_path = target
    else:
        if not target.exists():
            raise fail(f"data file not found: {target}")
        config_path = config if config is not None else _project_config(target)
        # the file as the run's training split, alone: JSON strings are YAML scalars
        where = json.dumps(str(target.resolve()))
        overrides += [f"data.train={where}", "data.eval=null", "data.test=null"]
    if not config_path.is_file():
        raise fail(f"config not found: {config_path}")
    loaded = load_config(config_path, overrides)
    result = check_data(loaded, world_size=world_size)
    typer.echo(render(result, limit=None if show_all else 50))
    if result.failed:
        raise typer.Exit(1)


def _project_config(data: Path) -> Path:
    from mmgen import project

    for start in (data.resolve().parent, Path.cwd()):
        root = project.find_root(start)
        if root is not None and (root / "configs" / "train.yaml").is_file():
            return root / "configs" / "train.yaml"
    raise fail(f"{data} is a data file: name the training config with --config")

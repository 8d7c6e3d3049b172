"""The ``mmgen`` command line. One module per command; none imports torch at module level."""

from __future__ import annotations

import typer

from mmgen.cli import bench, doctor
from mmgen.cli.app import MmgenGroup

app = typer.Typer(
    name="mmgen",
    cls=MmgenGroup,
    help="Add a modality to an LLM from a YAML spec, and train it on packed batches.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("doctor")(doctor.doctor)
app.add_typer(bench.app, name="bench")

# codegen: spec-first modality generation and the project scaffold
from mmgen.cli import init, new_modality, specs, validate  # noqa: E402

app.command("init")(init.init)
app.command("new-modality")(new_modality.new_modality)
app.add_typer(specs.app, name="specs")
app.command("validate")(validate.validate)

# train: the training loop, its data check and the offline demo data
from mmgen.cli import data, demo_data, train  # noqa: E402

app.command("train")(train.train)
app.add_typer(data.app, name="data")
app.command("demo-data")(demo_data.demo_data)


# infer: use a trained model
from mmgen.cli import chat, evaluate, export, predict, serve  # noqa: E402

app.command("predict")(predict.predict)
app.command("eval")(evaluate.evaluate)
app.command("chat")(chat.chat)
app.command("serve")(serve.serve)
app.command("export")(export.export)


def main() -> None:
    app(prog_name="mmgen")

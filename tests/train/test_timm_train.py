"""A timm encoder end to end: ``mmgen new-modality picture --spec specs/examples/timm_image.yaml``
in a project made by ``mmgen init``, then ``mmgen train`` for 2 steps on the demo image task with
the spec's tiny random-init ViT; the saved model reloads, self-contained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_timm import EXAMPLE, needs_timm
from tests.train.helpers import make_config, write_config

PACKAGE = "timmproj"


@pytest.fixture(scope="module")
def timm_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from mmgen.cli import app

    project = tmp_path_factory.mktemp("timm") / PACKAGE
    runner = CliRunner()
    for args in (
        ["init", str(project)],
        ["new-modality", "picture", "--spec", str(EXAMPLE), "--project", str(project)],
        ["demo-data", "image", "--out", str(project / "data"), "--train", "16", "--eval", "4",
         "--test", "4"],
    ):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    sys.path.insert(0, str(project))
    yield project
    sys.path.remove(str(project))


@needs_timm
def test_a_generated_timm_modality_trains_and_reloads(timm_project: Path) -> None:
    from mmgen import MultimodalModel
    from mmgen.train.config import load_config
    from mmgen.train.loop import FINAL_MODEL_DIR, train
    from tests.train.helpers import train_losses

    # the generated files pass the project's own ruff
    checked = subprocess.run(
        [sys.executable, "-m", "ruff", "check", f"{PACKAGE}/modalities/picture", "tests"],
        cwd=timm_project, capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr

    config = make_config(timm_project / "data", timm_project / "runs" / "picture")
    config["package"] = PACKAGE
    # the dataset's "image" entries go to the generated picture modality, whose encoder is the
    # spec's test-block ViT (random init: the spec's pretrained weights are not read)
    config["modalities"] = {
        "image": {"type": "picture", "config": {"max_batch_size": 8},
                  "random_init": {"spec": str(EXAMPLE)}},
    }  # fmt: skip
    config["stages"] = [{"name": "full", "steps": 2}]
    config["eval"] = {"accuracy_samples": 2, "max_new_tokens": 3}
    run = train(load_config(write_config(timm_project / "configs" / "picture.yaml", config)))
    assert run.steps == 2 and sorted(train_losses(run.output_dir)) == [1, 2]

    model = MultimodalModel.from_pretrained(run.output_dir / FINAL_MODEL_DIR)
    picture = model.modalities["image"]
    assert type(picture).__name__ == "PictureModality"
    assert picture.config.encoder_weights is None and picture.config.encoder_options["depth"] == 2
    last = MultimodalModel.from_pretrained(run.output_dir / "checkpoints/step-00000002/model")
    trained = last.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, trained[name]), name

"""The built package trains: a wheel built from the source tree, installed into a bare folder and
used with this interpreter (the source tree gone), runs the README's main job — `mmgen init`,
`mmgen new-modality audio`, `mmgen demo-data audio`, a short `mmgen train` — and ships the
templates, specs and the compiled extension.

    python -m pip wheel --no-deps --no-build-isolation . -w dist/
    python -m pip install --no-deps --target DIR dist/mmgen-*.whl
    PYTHONPATH=DIR python -m mmgen ...
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(
    ".venv", "build", "dist", ".git", "*.so", "__pycache__", "*.egg-info", ".*_cache", "runs"
)

pytestmark = pytest.mark.slow


def run(*args, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_the_wheel_trains(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=SKIP)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", ".", "-w", tmp_path / "dist",
        cwd=source)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("mmgen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    needed = ["mmgen/train/__init__.py", "mmgen/train/loop.py", "mmgen/templates/", "mmgen/_C",
              "mmgen/specs/audio.yaml", "mmgen/modalities/audio/modality.py"]  # fmt: skip
    for prefix in needed:
        assert any(name.startswith(prefix) for name in names), prefix
    site = tmp_path / "site"
    run(*pip, "install", "--no-deps", "--target", site, wheel, cwd=tmp_path)
    shutil.rmtree(source)  # nothing may come from a source tree any more

    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    mmgen = [sys.executable, "-m", "mmgen"]
    where = run(sys.executable, "-c", "import mmgen; print(mmgen.__file__)", cwd=tmp_path, env=env)
    assert where.startswith(str(site)), where
    listed = [line.split()[0] for line in run(*mmgen, "specs", cwd=tmp_path, env=env).splitlines()]
    assert listed == ["audio", "document", "ecg", "image", "video"]

    run(*mmgen, "init", "demo", cwd=tmp_path, env=env)
    project = tmp_path / "demo"
    run(*mmgen, "new-modality", "audio", cwd=project, env=env)
    run(*mmgen, "demo-data", "audio", "--train", "48", "--eval", "8", "--test", "8",
        cwd=project, env=env)  # fmt: skip
    out = run(
        *mmgen, "train", "configs/train.yaml", "--set", "stages.0.steps=3",
        "--set", "eval.every=null", "--set", "checkpoint.every=2", "--set", "logging.every=1",
        cwd=project, env=env,
    )  # fmt: skip
    assert re.search(r"held-out exact match: [\d.]+% \(\d+/8\)", out), out
    assert (project / "runs/demo/model/manifest.json").is_file()
    assert (project / "runs/demo/checkpoints/step-00000003/trainer_state.json").is_file()

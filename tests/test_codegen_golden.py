"""Golden files: `mmgen new-modality audio` in a fresh `mmgen init demo` project, compared whole.

After an intended change to the templates or the audio spec, regenerate them with
    MMGEN_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_codegen_golden.py
and review the diff of tests/golden/ like any other code change.
"""

import os
from pathlib import Path

from typer.testing import CliRunner

from mmgen.cli import app

GOLDEN = Path(__file__).parent / "golden" / "audio"
GENERATED = [
    "demo/modalities/__init__.py",
    "demo/modalities/audio/__init__.py",
    "demo/modalities/audio/config.py",
    "demo/modalities/audio/modality.py",
    "demo/modalities/audio/processor.py",
    "tests/test_audio.py",
]


def test_audio_matches_golden_files(tmp_path):
    runner = CliRunner()
    project = tmp_path / "demo"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    result = runner.invoke(app, ["new-modality", "audio", "--project", str(project)])
    assert result.exit_code == 0, result.output
    written = sorted(
        str(p.relative_to(project))
        for p in project.rglob("*.py")
        if "audio" in str(p.relative_to(project))
    )
    assert written == sorted(f for f in GENERATED if "audio" in f)
    update = os.environ.get("MMGEN_UPDATE_GOLDEN") == "1"
    for name in GENERATED:
        text = (project / name).read_text()
        golden = GOLDEN / f"{name}.golden"
        if update:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert golden.exists(), f"{golden} missing: run with MMGEN_UPDATE_GOLDEN=1"
        assert text == golden.read_text(), f"{name} differs from {golden}"

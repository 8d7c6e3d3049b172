"""The package imports cheaply and the CLI answers without torch."""

import subprocess
import sys

from typer.testing import CliRunner

import mmgen
from mmgen.cli import app

runner = CliRunner()


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def test_import_mmgen_does_not_import_torch():
    modules = _imported_after("import mmgen")
    assert "torch" not in modules
    assert "transformers" not in modules


def test_cli_help_does_not_import_torch():
    # the help pages themselves, not only the imports: a command that imported torch while typer
    # builds its help would show up here
    for args in (["--help"], ["bench", "--help"], ["bench", "merge", "--help"], ["doctor", "-h"]):
        modules = _imported_after(
            "from typer.testing import CliRunner; from mmgen.cli import app; "
            f"result = CliRunner().invoke(app, {args!r}); assert result.exit_code == 0"
        )
        assert "torch" not in modules and "transformers" not in modules, args


def test_help_short_and_long_flags():
    for flag in ("-h", "--help"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0, result.output
        assert "doctor" in result.output


def test_public_constants():
    assert mmgen.MODALITY_VALUE_KEY == "value"
    assert mmgen.NUM_EMBEDDINGS_KEY == "num_embeddings"
    assert mmgen.MODALITY_TYPE_KEY == "type"
    assert mmgen.MODALITIES_KEY == "modalities"


def test_unknown_attribute_raises():
    try:
        mmgen.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_doctor_reports_loaded_extension():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "mmgen._C         loaded" in result.output

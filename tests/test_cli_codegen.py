"""The codegen commands through typer's CliRunner: help, errors, plan/dry-run/force, idempotence."""

import resource
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.spec.catalog import builtin_specs

runner = CliRunner()
COMMANDS = [["init"], ["new-modality"], ["specs"], ["specs", "show"], ["validate"]]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def files_under(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "demo"
    assert invoke("init", root).exit_code == 0
    return root


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_flags(command, flag):
    result = invoke(*command, flag)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_option_and_argument_has_help(command):
    found = typer.main.get_command(app)
    for part in command:
        found = found.commands[part]
    params = [p for p in found.params if p.name != "help"]
    assert params or command == ["specs"]
    for param in params:
        assert getattr(param, "help", None), f"{' '.join(command)}: {param.name} has no help"


def test_help_is_fast_and_imports_no_torch():
    """`mmgen --help` in a fresh interpreter: no torch/transformers, under 0.5 s of CPU time
    (CPU time, not wall time: other jobs on a shared machine do not count against it).
    """
    code = (
        "import sys; from mmgen.cli import main; sys.argv = ['mmgen', '--help']\n"
        "try: main()\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)"
    )
    costs = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert out.returncode == 0, out.stderr
        assert "Usage" in out.stdout and out.stderr.split() == ["False", "False"]
        costs.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    assert min(costs) < 0.5, f"`mmgen --help` used {min(costs):.2f} s of CPU"


def test_specs_lists_builtins_with_descriptions():
    result = invoke("specs")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(builtin_specs())
    assert all(len(line.split(None, 1)[1]) > 20 for line in lines)


def test_specs_show_prints_the_yaml():
    result = invoke("specs", "show", "audio")
    assert result.exit_code == 0
    assert result.output == builtin_specs()["audio"].read_text()
    missing = invoke("specs", "show", "smell")
    assert missing.exit_code == 1 and "no built-in spec named 'smell'" in missing.output


def test_validate_good_and_bad(tmp_path):
    assert invoke("validate", builtin_specs()["video"]).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(builtin_specs()["ecg"].read_text().replace("length:", "lenght:"))
    result = invoke("validate", bad)
    assert result.exit_code == 1
    assert f"error: {bad}:" in result.output and "did you mean 'length'?" in result.output
    assert "Traceback" not in result.output


def test_validate_checks_formula_names_against_the_config(tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text(
        builtin_specs()["audio"].read_text().replace("config.downsample_factor", "config.nope")
    )
    result = invoke("validate", spec)
    assert result.exit_code == 1
    assert "num_embeddings: config.nope is not a field of the generated config" in result.output
    # a str field would not fail in the generated Python, it would count wrong
    spec.write_text(
        builtin_specs()["audio"].read_text().replace("config.downsample_factor", "config.loader")
    )
    result = invoke("validate", spec)
    assert result.exit_code == 1
    assert "num_embeddings: config.loader is a str field, not a number" in result.output


def test_misspelt_classes_activation_and_encoder_fields_are_caught(tmp_path, project):
    text = builtin_specs()["image"].read_text()
    typos = {
        "class: transformers.CLIPImageProcessor": "class: transformers.CLIPImageProcesor",
        "activation: gelu": "activation: gelux",
        "encoder.patch_size": "encoder.patch_sise",
        "    patch_size: 8": "    patch_sise: 8",  # the test block's tiny encoder
    }
    for right, wrong in typos.items():
        assert right in text
        text = text.replace(right, wrong)
    spec = tmp_path / "image.yaml"
    spec.write_text(text)
    result = invoke("validate", spec)
    assert result.exit_code == 1
    errors = result.output.splitlines()
    assert len(errors) == 4 and all(e.startswith(f"error: {spec}:") for e in errors), errors
    assert (
        "processor.class: transformers has no class 'CLIPImageProcesor'; did you mean"
        in (errors[0])
    )  # in file order: processor, num_embeddings, projector, test
    assert errors[1].endswith(
        "num_embeddings: encoder.patch_sise is not a field of CLIPVisionConfig;"
        " did you mean 'patch_size'?"
    )
    assert errors[2].endswith(
        "projector.activation: unknown activation 'gelux'; did you mean 'gelu'?"
    )
    assert errors[3].endswith(
        "test.encoder.patch_sise: not a field of CLIPVisionConfig; did you mean 'patch_size'?"
    )
    # new-modality refuses it the same way, in one line, and writes nothing
    before = files_under(project)
    result = invoke("new-modality", "xray", "--spec", spec, "--project", project)
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "CLIPImageProcesor" in result.output and "(and 3 more; see `mmgen validate`)" in (
        result.output
    )
    assert files_under(project) == before


def test_a_transformers_model_type_is_refused_as_modality_name(tmp_path, project):
    before = files_under(project)
    result = invoke(
        "new-modality", "whisper", "--spec", builtin_specs()["audio"], "--project", project
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "modality name 'whisper' is a transformers model type" in result.output
    assert files_under(project) == before


def test_unknown_name_without_spec_lists_builtins(project):
    result = invoke("new-modality", "smell", "--project", project)
    assert result.exit_code == 1
    assert "no built-in spec named 'smell'; built-ins: audio, document, ecg, image, video" in (
        result.output
    )
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_project_and_out_are_exclusive(tmp_path, project):
    result = invoke("new-modality", "audio", "--project", project, "--out", tmp_path / "x")
    assert result.exit_code == 1 and "either --project or --out" in result.output


def test_not_a_project(tmp_path):
    result = invoke("new-modality", "audio", "--project", tmp_path)
    assert result.exit_code == 1 and "no pyproject.toml" in result.output


def test_missing_ruff_is_one_line_and_writes_nothing(project, monkeypatch):
    from mmgen.codegen import formatting

    formatting.ruff_binary.cache_clear()
    monkeypatch.setitem(sys.modules, "ruff", None)  # `import ruff` fails as if not installed
    before = files_under(project)
    try:
        result = invoke("new-modality", "ecg", "--project", project)
    finally:
        formatting.ruff_binary.cache_clear()
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "ruff is not installed" in result.output and "Traceback" not in result.output
    assert files_under(project) == before


def test_dry_run_writes_nothing(project):
    before = files_under(project)
    result = invoke("new-modality", "image", "--project", project, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "create     demo/modalities/image/modality.py" in result.output
    assert "overwrite  demo/modalities/__init__.py  (registers image)" in result.output
    assert "+import demo.modalities.image" in result.output
    assert files_under(project) == before


def test_twice_is_a_no_op_and_conflicts_need_force(project):
    assert invoke("new-modality", "ecg", "--project", project).exit_code == 0
    generated = files_under(project)
    again = invoke("new-modality", "ecg", "--project", project)
    assert again.exit_code == 0 and "up to date, nothing to do" in again.output
    assert files_under(project) == generated

    config = project / "demo" / "modalities" / "ecg" / "config.py"
    config.write_text(config.read_text() + "# my edit\n")
    edited = files_under(project)
    conflict = invoke("new-modality", "ecg", "--project", project)
    assert conflict.exit_code == 1
    assert "conflict   demo/modalities/ecg/config.py" in conflict.output
    assert "-# my edit" in conflict.output and "--force" in conflict.output
    assert files_under(project) == edited
    dry = invoke("new-modality", "ecg", "--project", project, "--dry-run")
    assert dry.exit_code == 1 and files_under(project) == edited

    forced = invoke("new-modality", "ecg", "--project", project, "--force")
    assert forced.exit_code == 0 and "overwrite  demo/modalities/ecg/config.py" in forced.output
    assert files_under(project) == generated


def test_missing_anchor_is_a_clear_error(project):
    registry = project / "demo" / "modalities" / "__init__.py"
    registry.write_text('"""no anchor here"""\n')
    before = files_under(project)
    result = invoke("new-modality", "audio", "--project", project)
    assert result.exit_code == 1
    assert f"{registry}: anchor comment" in result.output and "not found" in result.output
    assert files_under(project) == before


def test_out_writes_a_plain_folder(tmp_path):
    out = tmp_path / "plain"
    result = invoke("new-modality", "document", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(files_under(out)) == [
        "document/__init__.py",
        "document/config.py",
        "document/loader.py",
        "document/modality.py",
        "document/processor.py",
        "test_document.py",
    ]
    assert "from document import" in (out / "test_document.py").read_text()


def test_out_refuses_names_that_shadow_installed_modules(tmp_path):
    spec = tmp_path / "yaml.yaml"
    spec.write_text(builtin_specs()["ecg"].read_text())
    result = invoke("new-modality", "pydantic", "--spec", spec, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "shadow the installed module 'pydantic'" in result.output
    assert not (tmp_path / "o").exists()


def test_spec_file_renames_the_modality(project, tmp_path):
    spec = tmp_path / "mine.yaml"
    spec.write_text(builtin_specs()["image"].read_text())
    result = invoke("new-modality", "x-ray", "--spec", spec, "--project", project)
    assert result.exit_code == 0, result.output
    modality = (project / "demo" / "modalities" / "x_ray" / "modality.py").read_text()
    assert modality.startswith('# Generated by `mmgen new-modality` from spec "x-ray" (mine.yaml)')
    assert '@AutoModality.register("x_ray")' in modality and "class XRayModality" in modality


def test_init_twice_and_bad_names(tmp_path):
    root = tmp_path / "proj"
    assert invoke("init", root).exit_code == 0
    again = invoke("init", root)
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert 'package = "proj"' in (root / "pyproject.toml").read_text()
    bad = invoke("init", tmp_path / "my project")
    assert bad.exit_code == 1 and "project folder name" in bad.output
    named = invoke("init", tmp_path / "my project", "--package", "lab")
    assert named.exit_code == 0 and (tmp_path / "my project" / "lab" / "modalities").is_dir()


def test_init_again_keeps_the_modality_registry(project):
    assert invoke("new-modality", "ecg", "--project", project).exit_code == 0
    registry = project / "demo" / "modalities" / "__init__.py"
    registered = registry.read_text()
    assert "import demo.modalities.ecg" in registered
    for flags in ([], ["--force"]):
        again = invoke("init", project, *flags)
        assert again.exit_code == 0, again.output
        assert "modalities/__init__.py  (modality registry, kept)" in again.output
        assert registry.read_text() == registered
    # other scaffold files are still compared: an edited one is a conflict
    (project / "README.md").write_text("mine\n")
    conflict = invoke("init", project)
    assert conflict.exit_code == 1 and "README.md: exists with other content" in conflict.output


def test_readme_spec_example_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = tmp_path / "eeg.yaml"
    spec.write_text(example)
    result = invoke("validate", spec)
    assert result.exit_code == 0, result.output


def test_existing_module_of_the_same_name_is_not_shadowed(project):
    (project / "demo" / "modalities" / "ecg.py").write_text("HAND_WRITTEN = True\n")
    before = files_under(project)
    result = invoke("new-modality", "ecg", "--project", project)
    assert result.exit_code == 1 and "ecg.py: a module of that name exists" in result.output
    assert files_under(project) == before


def test_readme_generated_file_is_the_golden_one():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = readme.split("```python\n# Generated by `mmgen new-modality`", 1)[1].split("```")[0]
    golden = Path(__file__).parent / "golden/audio/demo/modalities/audio/modality.py.golden"
    body = shown.split("...\n\n", 1)[1]
    assert golden.read_text().endswith(body)


def test_project_is_found_from_a_subfolder(project, monkeypatch):
    monkeypatch.chdir(project / "demo" / "modalities")
    result = invoke("new-modality", "ecg")
    assert result.exit_code == 0, result.output
    assert (project / "tests" / "test_ecg.py").is_file()


def test_validate_reports_every_problem_of_every_check_in_one_run(tmp_path):
    """Reference checks (transformers names) and generation checks (formula fields of the
    generated config, class-name clashes) together, each formula field with a suggestion."""
    text = builtin_specs()["image"].read_text()
    typos = {
        "class: transformers.CLIPVisionModel": "class: transformers.CLIPVisionModle",
        "config.downsample_factor": "config.downsample_facter",
    }
    for right, wrong in typos.items():
        assert right in text
        text = text.replace(right, wrong)
    spec = tmp_path / "image.yaml"
    spec.write_text(text)
    result = invoke("validate", spec)
    assert result.exit_code == 1
    errors = result.output.splitlines()
    assert len(errors) == 2, errors
    assert "encoder.class: transformers has no class 'CLIPVisionModle'; did you mean" in (
        result.output
    )
    assert (
        "num_embeddings: config.downsample_facter is not a field of the generated config;"
        " did you mean 'downsample_factor'?" in result.output
    )

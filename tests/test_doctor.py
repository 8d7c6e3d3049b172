"""`mmgen doctor`: every op's backends, a stale build named with the command that rebuilds it, and
a non-zero exit when mmgen._C cannot load."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys

import torch
from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.ops import buildinfo, extension

runner = CliRunner()
REBUILD = f"rebuild with     {buildinfo.rebuild_command(sys.executable)}"


def test_lists_every_op_with_its_cpu_backend():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line}
    for op in extension.OPS:
        assert "CPU" in rows[op], result.output
    assert rows["torch"] == [torch.__version__]
    assert "build kind" in result.output


def edited_sources(tmp_path):
    """A copy of the extension's sources: the checkout as it would be after an edit."""
    root = tmp_path / "src"
    shutil.copytree(buildinfo.REPO_ROOT / "csrc", root / "csrc")
    shutil.copy(buildinfo.REPO_ROOT / "setup.py", root / "setup.py")
    return root


def test_edited_sources_make_the_build_stale(tmp_path, monkeypatch):
    root = edited_sources(tmp_path)
    monkeypatch.setattr(extension, "source_hash", lambda: buildinfo.source_hash(root))
    built = extension.status().build["source_hash"]
    kernel = root / "csrc" / "cpu" / "merge.cpp"
    os.utime(kernel)  # a touch alone rebuilds nothing that differs: the hash is over contents
    assert buildinfo.source_hash(root) == buildinfo.source_hash()
    kernel.write_text(kernel.read_text() + "// edited\n")
    assert buildinfo.source_hash(root) != built
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output  # stale still loads: a warning, not a failure
    assert "stale            csrc/ or setup.py changed since the build" in result.output
    assert REBUILD in result.output


def test_another_torch_makes_the_build_stale(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    result = runner.invoke(app, ["doctor"])
    assert "running 9.9.9" in result.output and REBUILD in result.output


def test_exits_non_zero_when_the_extension_cannot_load(tmp_path):
    # a copy of the package whose compiled library is broken (as after a half-finished build)
    shutil.copytree(
        buildinfo.REPO_ROOT / "mmgen",
        tmp_path / "mmgen",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    broken = tmp_path / "mmgen" / f"_C{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    broken.write_bytes(b"not a shared library")
    result = subprocess.run(
        [sys.executable, "-m", "mmgen.cli", "doctor"],
        cwd=tmp_path,  # the copy shadows the installed package
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"mmgen._C         NOT LOADED: {broken}" in result.stdout
    assert "rebuild with" in result.stdout and "--no-build-isolation" in result.stdout

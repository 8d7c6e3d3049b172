"""Plan, then apply: verdicts, dry-run diffs, conflicts, and all-or-nothing writes."""

import os

import pytest

from mmgen.codegen import plan as plan_module
from mmgen.codegen.plan import Verdict, apply, plan_files
from mmgen.errors import MmgenError


def snapshot(root):
    return {
        str(p.relative_to(root)): p.read_text() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "same.py").write_text("same\n")
    (tmp_path / "differs.py").write_text("mine\n")
    return tmp_path


def wanted(root):
    return {
        root / "new" / "deep" / "a.py": "a\n",
        root / "same.py": "same\n",
        root / "differs.py": "generated\n",
    }


def test_verdicts(tree):
    plan = plan_files(tree, wanted(tree))
    verdicts = {a.path.name: a.verdict for a in plan.actions}
    assert verdicts == {
        "a.py": Verdict.CREATE,
        "same.py": Verdict.IDENTICAL,
        "differs.py": Verdict.CONFLICT,
    }
    forced = plan_files(tree, wanted(tree), force=True)
    assert {a.path.name: a.verdict for a in forced.actions}["differs.py"] is Verdict.OVERWRITE


def test_describe_shows_a_diff_for_each_conflict(tree):
    text = plan_files(tree, wanted(tree)).describe()
    assert "create     new/deep/a.py" in text
    assert "identical  same.py" in text
    assert "conflict   differs.py" in text
    assert "-mine" in text and "+generated" in text


def test_conflict_writes_nothing(tree):
    before = snapshot(tree)
    with pytest.raises(
        MmgenError, match=r"differs\.py: exists with other content; rerun with --force"
    ):
        apply(plan_files(tree, wanted(tree)))
    assert snapshot(tree) == before


def test_force_applies_and_second_run_is_a_no_op(tree):
    written = apply(plan_files(tree, wanted(tree), force=True))
    assert {a.path.name for a in written} == {"a.py", "differs.py"}
    assert (tree / "differs.py").read_text() == "generated\n"
    assert (tree / "new" / "deep" / "a.py").read_text() == "a\n"
    again = plan_files(tree, wanted(tree))
    assert all(a.verdict is Verdict.IDENTICAL for a in again.actions)
    assert apply(again) == []


def test_edits_are_overwrites_that_keep_content(tree):
    edits = {tree / "same.py": (lambda text: text + "added\n", "registers x")}
    plan = plan_files(tree, {}, edits=edits)
    (action,) = plan.actions
    assert action.verdict is Verdict.OVERWRITE and action.note == "registers x"
    apply(plan)
    assert (tree / "same.py").read_text() == "same\nadded\n"
    with pytest.raises(MmgenError, match="missing; it should hold the anchor"):
        plan_files(tree, {}, edits={tree / "gone.py": (str, "x")})


@pytest.mark.parametrize("fail_at", [1, 2])
def test_failure_midway_leaves_the_tree_as_it_was(tree, monkeypatch, fail_at):
    before = snapshot(tree)
    calls = {"n": 0}
    real_replace = os.replace

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == fail_at + 1:  # the first rename(s) succeed, then the disk "fails"
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(plan_module.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        apply(plan_files(tree, wanted(tree), force=True))
    monkeypatch.setattr(plan_module.os, "replace", real_replace)
    assert snapshot(tree) == before  # no new files, folders, temp files or backups


def test_failure_while_staging_leaves_nothing(tree, monkeypatch):
    before = snapshot(tree)

    def broken_mkstemp(*args, **kwargs):
        raise OSError("read-only")

    monkeypatch.setattr(plan_module.tempfile, "mkstemp", broken_mkstemp)
    with pytest.raises(OSError, match="read-only"):
        apply(plan_files(tree, wanted(tree), force=True))
    assert snapshot(tree) == before


def test_a_directory_in_the_way_is_an_error(tmp_path):
    (tmp_path / "x.py").mkdir()
    with pytest.raises(MmgenError, match="is a directory"):
        plan_files(tmp_path, {tmp_path / "x.py": "x"})

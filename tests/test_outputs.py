"""Outputs: whole or not at all, the user's umask permissions, never over a run's files or an unrelated folder."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from helpers import fg


@pytest.fixture
def run_dir(demo_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(demo_run, d)
    return d


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_get_the_umask_permissions(run_dir, tmp_path, umask, mask):
    umask(mask)
    imp = tmp_path / "imported"
    assert fg("import", run_dir / "edges.parquet", "--out", imp).exit_code == 0
    assert fg("viz", run_dir, "--head", 0, "--circuit", "qk", "--out", tmp_path / "v.html").exit_code == 0
    assert fg("export", run_dir, "--graphml", tmp_path / "g.graphml").exit_code == 0
    assert fg("report", run_dir, "--out", tmp_path / "rep", "--no-plots").exit_code == 0
    assert fg("labels", imp, "--source", tmp_path / "nolabels.json").exit_code != 0  # (a failing command writes nothing)
    files = [imp / "edges.parquet", imp / "features.parquet", imp / "manifest.json", tmp_path / "v.html",
             tmp_path / "g.graphml", tmp_path / "rep" / "index.html"]
    for f in files:
        assert _mode(f) == 0o666 & ~mask, f
    for d in (imp, tmp_path / "rep"):
        assert _mode(d) == 0o777 & ~mask, d


def test_no_command_writes_over_a_run_or_an_unrelated_folder(run_dir, tmp_path):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    cases = [
        ("export", run_dir, "--graphml", run_dir / "edges.parquet", "--force"),
        ("viz", run_dir, "--head", 0, "--circuit", "qk", "--out", run_dir / "manifest.json", "--force"),
        ("report", run_dir, "--out", run_dir, "--force"),
        ("tetrads", run_dir, "--head", 0, "--out", run_dir / "edges.parquet", "--force"),
        ("import", run_dir / "edges.parquet", "--out", run_dir),
    ]
    for args in cases:
        r = fg(*args)
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (args, r.output)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    # --force replaces only what featgraph made, of the same kind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for args in (("demo", "--out", mine), ("demo", "--out", mine, "--force"),
                 ("report", run_dir, "--out", mine, "--force"), ("import", run_dir / "edges.parquet", "--out", mine, "--force")):
        r = fg(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "--force" not in r.stderr and "not something featgraph made" in r.stderr, r.stderr  # no hint that cannot work
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    r = fg("report", run_dir, "--out", tmp_path / "rep", "--no-plots")
    assert r.exit_code == 0
    assert fg("import", run_dir / "edges.parquet", "--out", tmp_path / "rep", "--force").exit_code == 2  # a report is not a run


def test_existing_files_need_force(run_dir, tmp_path):
    page = tmp_path / "v.html"
    page.write_text("mine")
    r = fg("viz", run_dir, "--head", 0, "--circuit", "qk", "--out", page)
    assert r.exit_code == 2 and "--force" in r.stderr and page.read_text() == "mine"
    assert fg("viz", run_dir, "--head", 0, "--circuit", "qk", "--out", page, "--force").exit_code == 0
    assert page.read_text() != "mine"
    from featgraph import open_run

    m = open_run(run_dir).manifest
    png = tmp_path / "p.png"
    png.write_bytes(b"x")
    r = fg("positional", "--model", m.model["ref"], "--layer", m.layer, "--sae-in", m.sae_in["ref"], "--out", png)
    assert r.exit_code == 2 and "--force" in r.stderr and png.read_bytes() == b"x"
    # the CSV beside the figure is protected too
    (tmp_path / "q.csv").write_text("mine")
    r = fg("positional", "--model", m.model["ref"], "--layer", m.layer, "--sae-in", m.sae_in["ref"], "--out", tmp_path / "q.png")
    assert r.exit_code == 2 and (tmp_path / "q.csv").read_text() == "mine" and not (tmp_path / "q.png").exists()


def test_nothing_half_written_leaves_no_temporaries(run_dir, tmp_path):
    r = fg("report", run_dir, "--out", tmp_path / "rep", "--top", 0)
    assert r.exit_code == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run"]

"""Outputs under attack or contention (issue 21): featgraph never writes through a link planted where it keeps a
lock or staging file, two processes on one output stop with one line instead of mixing their results, and
`--force` replaces only what featgraph made."""

from __future__ import annotations

import os
import shutil

import pytest

import featgraph as fg_api

from helpers import LAYER, fg


@pytest.fixture()
def run_copy(demo_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(demo_run, d)
    return d


def test_load_does_not_follow_a_planted_lock_link(run_copy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    lock = run_copy / ".graph.lock"
    lock.unlink(missing_ok=True)
    (run_copy / "graph.lbdb").unlink(missing_ok=True)
    lock.symlink_to(victim)
    r = fg("load", run_copy)
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.output
    assert "symbolic link" in r.stderr and ".graph.lock" in r.stderr
    assert victim.read_text() == "keep me\n" and lock.is_symlink() and not (run_copy / "graph.lbdb").exists()
    # a link to nowhere is not created either
    lock.unlink()
    lock.symlink_to(tmp_path / "made-by-link")
    assert fg("load", run_copy).exit_code == 2 and not (tmp_path / "made-by-link").exists()
    # a hard link is locked, never truncated
    lock.unlink()
    os.link(victim, lock)
    r = fg("load", run_copy)
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "keep me\n"
    assert fg_api.open_run(run_copy).query("MATCH (f:Feature) RETURN count(f) AS n")["n"][0] > 0


def _extract(tiny, out, *extra):
    model, _, sae_in, sae_out = tiny
    return fg("extract", "--model", model, "--layer", LAYER, "--sae-in", sae_in, "--sae-out", sae_out, "--top-k", 20,
              "--device", "cpu", "--no-labels", "--sae-in-id", "0-t-in", "--sae-out-id", "1-t-out", "--out", out, *extra)


def test_extract_does_not_write_through_a_planted_partial_link(tiny, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    (tmp_path / ".run.partial").symlink_to(victim)
    r = _extract(tiny, tmp_path / "run")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and ".run.partial" in r.stderr, r.output
    assert [p.name for p in victim.iterdir()] == ["precious.txt"] and not (tmp_path / "run").exists()

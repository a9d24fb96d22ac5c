"""Runs travel: a run made from one working directory reloads its model and SAEs from any other, and after its
folder (with the inputs beside it) moves; a run missing a file its manifest lists says which."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from featgraph.api.demo import run_demo

from helpers import fg


def _reloads(run: Path, out: Path, every: bool = True) -> None:
    """Every command that reloads a run's weights (or, not `every`, one), from the current directory, with no warning."""
    out.mkdir(parents=True)
    r = fg("tetrads", run, "--head", 0, "--circuit", "ov", "--top", 2, "--format", "json")
    assert r.exit_code == 0 and "cosines not computed" not in r.stderr, r.stderr
    assert json.loads(r.stdout)[0]["cos_src"] is not None
    if not every:
        return
    r = fg("correlation", run, "--out", out / "corr.png")
    assert r.exit_code == 0 and (out / "corr.png").is_file(), r.output
    r = fg("report", run, "--out", out / "report")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr
    assert (out / "report" / "positional.png").is_file() and (out / "report" / "correlation.png").is_file()
    pytest.importorskip("transformers")
    r = fg("validate", run, "--prompt", "the man said the words", "--heads", "0")
    assert r.exit_code == 0, r.output


def test_a_run_reloads_its_weights_from_anywhere_and_after_its_folder_moves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_demo(Path("exports/demo"))  # as the README's command: a path relative to the working directory
    manifest = json.loads((tmp_path / "exports/demo/run/manifest.json").read_text())
    for key, rel in (("model", "../inputs/model"), ("sae_in", "../inputs/sae/layer_0/params.npz")):
        assert manifest[key]["ref"] == str((tmp_path / "exports/demo/inputs").resolve() / Path(rel).relative_to("../inputs"))
        assert manifest[key]["ref_from_run"] == rel

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _reloads(tmp_path / "exports/demo/run", elsewhere / "a")

    # The run alone is copied elsewhere: its inputs are where the manifest records them.
    shutil.copytree(tmp_path / "exports/demo/run", tmp_path / "alone")
    _reloads(tmp_path / "alone", elsewhere / "b", every=False)

    # The folder moves with its inputs: the recorded absolute paths are gone, the paths from the run still hold.
    shutil.move(tmp_path / "exports", tmp_path / "moved")
    _reloads(tmp_path / "moved/demo/run", elsewhere / "c")


def test_an_atlas_made_with_a_relative_model_path_reloads_it_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_demo(Path("demo"))
    r = fg("atlas", "--model", "demo/inputs/model", "--layers", "1", "--sae-template", "demo/inputs/sae/layer_{layer}/params.npz",
           "--sae-id-template", "{layer}-demo-res", "--model-id", "featgraph-demo", "--top-k", 50, "--no-labels",
           "--device", "cpu", "--out", "atlas")
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path / "demo")  # where `demo/inputs/model` is no path at all (it would read as a Hub id)
    r = fg("correlation", tmp_path / "atlas", "--layer", 1, "--out", tmp_path / "corr.png")
    assert r.exit_code == 0, r.output
    r = fg("tetrads", tmp_path / "atlas", "--top", 1, "--format", "json")
    assert r.exit_code == 0 and "cosines not computed" not in r.stderr, r.stderr
    monkeypatch.chdir(tmp_path)  # continuing the atlas with the same relative request finds its layer done
    r = fg("atlas", "--model", "demo/inputs/model", "--layers", "1", "--sae-template", "demo/inputs/sae/layer_{layer}/params.npz",
           "--sae-id-template", "{layer}-demo-res", "--model-id", "featgraph-demo", "--top-k", 50, "--no-labels",
           "--device", "cpu", "--out", "atlas")
    assert r.exit_code == 0 and "recomput" not in r.output.lower(), r.output


@pytest.mark.parametrize("name", ["features.parquet", "edges.csv"])
def test_a_run_missing_a_file_its_manifest_lists_is_an_error_naming_it(demo_run, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    if name == "edges.csv":  # a run made with --csv lists edges.csv
        m = json.loads((run / "manifest.json").read_text())
        (run / "edges.csv").write_text("x\n")
        m["files"]["edges.csv"] = {"sha256": "0" * 64, "bytes": 2}
        (run / "manifest.json").write_text(json.dumps(m))
    (run / name).unlink()
    r = fg("tables", run, "--head", 0, "--circuit", "qk")
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr.count("\n") == 1 and str(run / name) in r.stderr and "manifest" in r.stderr, r.stderr

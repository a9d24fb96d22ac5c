"""An interrupted extract loses at most one (head, circuit) matrix: killed with SIGKILL, the next run resumes
and gives the same run as one that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import featgraph as fg
from featgraph.errors import FeatgraphWarning

from helpers import LAYER, TINY, write_sae
from helpers import fg as cli

KEY = ["head", "circuit", "src_index", "dst_index"]


@pytest.fixture(scope="module")
def wide(tiny, tmp_path_factory):
    """The tiny model with SAEs wide enough that each matrix takes a noticeable moment."""
    root = tmp_path_factory.mktemp("wide")
    return tiny[0], write_sae(root / "in", TINY["hidden_size"], 12000, seed=3), write_sae(root / "out", TINY["hidden_size"], 9000, seed=4)


def _args(wide, out, *extra):
    model, sae_in, sae_out = wide
    return ["extract", "--model", model, "--layer", LAYER, "--sae-in", sae_in, "--sae-out", sae_out, "--top-k", 300,
            "--device", "cpu", "--no-labels", "--sae-in-id", "0-w-in", "--sae-out-id", "1-w-out", "--out", out, *extra]


def _edges(d):
    return pd.read_parquet(d / "edges.parquet").sort_values(KEY).reset_index(drop=True)


def test_killed_extract_resumes_and_gives_the_uninterrupted_run(wide, tmp_path):
    fresh = tmp_path / "fresh"
    r = cli(*_args(wide, fresh))
    assert r.exit_code == 0, r.output
    assert not (tmp_path / ".fresh.partial").exists()  # nothing left behind by a finished run

    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    proc = subprocess.Popen([sys.executable, "-m", "featgraph", *map(str, _args(wide, out))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(partial.glob("head*.npz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(partial.glob("head*.npz")))
    assert 1 <= finished < 8, "the run was not caught mid-way"
    assert not out.exists()

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model, sae_in, sae_out = wide
        fg.extract(model=model, layer=LAYER, sae_in=sae_in, sae_out=sae_out, top_k=300, device="cpu", labels=False,
                   sae_in_id="0-w-in", sae_out_id="1-w-out", out=out)
    said = [str(w.message) for w in seen if issubclass(w.category, FeatgraphWarning)]
    assert any(m.startswith(f"resuming: {finished} of 8 ") for m in said), said
    pd.testing.assert_frame_equal(_edges(out), _edges(fresh))
    a, b = fg.open_run(out).manifest.stats, fg.open_run(fresh).manifest.stats
    assert a.keys() == b.keys() and all(np.allclose(list(a[k].values()), list(b[k].values())) for k in a)
    assert not partial.exists()


def _resumed(seen):
    return [str(w.message) for w in seen if issubclass(w.category, FeatgraphWarning) and "resuming" in str(w.message)]


def test_broken_parts_are_recomputed_and_other_inputs_start_afresh(wide, tmp_path, monkeypatch):
    model, sae_in, sae_out = wide
    common = dict(model=model, layer=LAYER, sae_in=sae_in, sae_out=sae_out, device="cpu", labels=False,
                  sae_in_id="0-w-in", sae_out_id="1-w-out", heads=[0, 1])
    fresh = fg.extract(**common, top_k=50)  # in memory: no parts kept anywhere
    out, partial = tmp_path / "run", tmp_path / ".run.partial"
    assert fresh.path is None and not partial.exists()

    from featgraph.runs import rundir

    def crash(*a, **k):
        raise KeyboardInterrupt  # interrupted after every matrix was finished, before the run was written

    monkeypatch.setattr(rundir, "write_run", crash)
    with pytest.raises(KeyboardInterrupt):
        fg.extract(**common, top_k=50, out=out)
    monkeypatch.undo()
    parts = sorted(partial.glob("head*.npz"))
    assert len(parts) == 4 and not out.exists()
    parts[0].write_bytes(parts[0].read_bytes()[:100])  # a part cut short
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = fg.extract(**common, top_k=50, out=out)
    assert len(_resumed(seen)) == 1 and _resumed(seen)[0].startswith("resuming: 3 of 4 (head, circuit) matrices")
    pd.testing.assert_frame_equal(_edges(out), fresh.edge_table.sort_values(KEY).reset_index(drop=True)[_edges(out).columns],
                                  check_dtype=False)
    assert run.path == out and not partial.exists()

    # parts of other inputs (here another top_k) are never used
    monkeypatch.setattr(rundir, "write_run", crash)
    with pytest.raises(KeyboardInterrupt):
        fg.extract(**common, top_k=50, out=tmp_path / "other")
    monkeypatch.undo()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fg.extract(**common, top_k=20, out=tmp_path / "other")
    assert _resumed(seen) == []
    assert fg.open_run(tmp_path / "other").edge_table.groupby(["head", "circuit"]).size().eq(20).all()


def test_restart_flag(wide, tmp_path):
    r = cli(*_args(wide, tmp_path / "run", "--heads", "0", "--restart"))
    assert r.exit_code == 0 and "resuming" not in r.stderr

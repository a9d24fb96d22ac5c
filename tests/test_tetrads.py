"""Tetrads: the sparse method against brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from featgraph.analyse.tetrads import cosines, find_tetrads, summary
from featgraph.cli.app import app

from helpers import runner


def brute(edges):
    rows = set()
    for (layer, head, circ), g in edges.groupby(["layer", "head", "circuit"]):
        w = {(a, b): x for a, b, x in zip(g["src"], g["dst"], g["weight"]) if x != 0}
        srcs, dsts = sorted(set(g["src"])), sorted(set(g["dst"]))
        for a, b in itertools.combinations(srcs, 2):
            for x, y in itertools.combinations(dsts, 2):
                if all(k in w for k in ((a, x), (a, y), (b, x), (b, y))):
                    ax, ay, bx, by = w[a, x], w[a, y], w[b, x], w[b, y]
                    if np.sign(ax) == np.sign(by) == -np.sign(ay) == -np.sign(bx):
                        rows.add((layer, head, circ, a, b, x, y, np.float32(ax), np.float32(ay), np.float32(bx), np.float32(by)))
    return rows


def random_edges(seed, n_feat=12, density=0.5, heads=2, shared_ids=True):
    rng = np.random.default_rng(seed)
    rows = []
    ids = [f"m/1-s/{i}" for i in range(n_feat)]
    out_ids = ids if shared_ids else [f"m/2-t/{i}" for i in range(n_feat)]
    for head in range(heads):
        for circ in ("QK", "OV"):
            dst_ids = ids if circ == "QK" else out_ids  # QK: features are sources *and* destinations
            for a in ids:
                for x in dst_ids:
                    if rng.random() < density:
                        rows.append((13, head, circ, a, x, float(rng.choice([-1, 1]) * rng.integers(1, 5))))  # ties on purpose
    df = pd.DataFrame(rows, columns=["layer", "head", "circuit", "src", "dst", "weight"])
    if shared_ids:  # plant a like-to-like QK tetrad: features 0 and 1 attend to themselves, not to each other
        a, b = ids[0], ids[1]
        plant = pd.DataFrame([(13, 0, "QK", a, a, 3.0), (13, 0, "QK", b, b, 2.0), (13, 0, "QK", a, b, -4.0), (13, 0, "QK", b, a, -1.0)],
                             columns=df.columns)
        mask = (df["head"] == 0) & (df["circuit"] == "QK") & df["src"].isin([a, b]) & df["dst"].isin([a, b])
        df = pd.concat([df[~mask], plant], ignore_index=True)
    return df


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force(seed):
    e = random_edges(seed, shared_ids=seed % 2 == 0)
    got = find_tetrads(e)
    want = brute(e)
    key = set(zip(got["layer"], got["head"], got["circuit"], got["src_a"], got["src_b"], got["dst_x"], got["dst_y"],
                  got["w_ax"], got["w_ay"], got["w_bx"], got["w_by"]))
    assert len(got) == len(want) and key == want
    assert (got["strength"] == got[["w_ax", "w_ay", "w_bx", "w_by"]].abs().min(axis=1)).all()
    assert got["strength"].is_monotonic_decreasing
    ll = got["like_to_like"]
    assert (ll == ((got["src_a"] == got["dst_x"]) & (got["src_b"] == got["dst_y"]))).all()
    if seed % 2 == 0:
        assert ll.any()
    s = summary(got)
    assert s["tetrads"].sum() == len(got)


def test_min_strength_equals_filtering():
    e = random_edges(11, n_feat=14)
    full = find_tetrads(e)
    strong = find_tetrads(e, min_strength=3)
    pd.testing.assert_frame_equal(strong, full[full["strength"] >= 3].reset_index(drop=True))


def test_planted_checkerboard_and_cosines():
    # sources 0 and 1 antipodal: every pair of destinations with differing signs is a tetrad.
    rng = np.random.default_rng(0)
    S = rng.normal(size=(4, 3))
    S[1] = -S[0]
    D = rng.normal(size=(5, 3))
    W = S @ D.T
    rows = [(13, 0, "OV", f"m/1-s/{i}", f"m/2-t/{k}", float(W[i, k])) for i in range(4) for k in range(5)]
    e = pd.DataFrame(rows, columns=["layer", "head", "circuit", "src", "dst", "weight"])
    t = find_tetrads(e)
    pair = t[(t["src_a"] == "m/1-s/0") & (t["src_b"] == "m/1-s/1")]
    pos = int((W[0] > 0).sum())
    assert 0 < pos < 5
    assert len(pair) == pos * (5 - pos)  # every {x, y} whose signs differ
    c = cosines(t, {(0, "OV"): (S, D)})
    np.testing.assert_allclose(c.loc[pair.index, "cos_src"], -1.0, rtol=1e-6)


def test_cli_writes_parquet_and_summary(tmp_path):
    e = random_edges(3)
    f = tmp_path / "e.csv"
    e.to_csv(f, index=False)
    run = tmp_path / "run"
    assert runner.invoke(app, ["import", str(f), "--out", str(run)]).exit_code == 0
    r = runner.invoke(app, ["tetrads", str(run), "--top", "5", "--format", "csv"])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(run / "tetrads.parquet")
    assert len(t) == len(brute(e)) and "head" in r.stdout
    r = runner.invoke(app, ["tetrads", str(f), "--head", "1", "--circuit", "qk", "--format", "json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tetrads", str(run), "--head", "9"])
    assert r.exit_code == 2 and "head 9" in r.stderr

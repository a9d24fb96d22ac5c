"""Benchmark the tetrad search: the sparse sign-matrix method against a naive join.

Naive baseline: join every positive edge with every negative edge at the same destination,
then join those triples with themselves on the source pair — no C = P·Nᵀ prefilter.
Prints wall time, tetrads found (identical sets are checked) and peak memory, in one run.

Usage: python bench/tetrads.py [--sizes 100000,1000000] [--naive-max 100000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from featgraph.analyse.tetrads import find_tetrads


def edges(n: int, n_feat: int = 16384, heads: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    per = n // (2 * heads)
    frames = []
    for h in range(heads):
        for c in ("QK", "OV"):
            key = rng.choice(n_feat * n_feat, size=per, replace=False)
            s, d = key // n_feat, key % n_feat
            # plant antipodal sources: feature 2i+1 mirrors 2i on a hub of destinations
            hub = rng.choice(n_feat, 30, replace=False)
            ps = np.repeat(rng.choice(n_feat // 2, 20, replace=False) * 2, 30)
            pd_ = np.tile(hub, 20)
            pw = rng.standard_normal(len(ps))
            frames.append(pd.DataFrame({"layer": 13, "head": h, "circuit": c,
                                        "src": np.concatenate([s, ps, ps + 1]).astype(str),
                                        "dst": np.concatenate([d, pd_, pd_]).astype(str),
                                        "weight": np.concatenate([rng.standard_normal(per), pw, -pw]).astype(np.float32)}))
    e = pd.concat(frames, ignore_index=True)
    return e.drop_duplicates(["head", "circuit", "src", "dst"], keep="last").reset_index(drop=True)


def naive(e: pd.DataFrame) -> pd.DataFrame:
    """The same tetrad rows (ids, four weights, strength) by plain joins."""
    out = []
    for (layer, head, circ), g in e.groupby(["layer", "head", "circuit"]):
        p, n = g[g["weight"] > 0], g[g["weight"] < 0]
        t = p.merge(n, on="dst", suffixes=("_a", "_b"))[["src_a", "src_b", "dst", "weight_a", "weight_b"]]
        tt = t.merge(t, left_on=["src_a", "src_b"], right_on=["src_b", "src_a"], suffixes=("", "_y"))
        tt = tt[tt["src_a"] < tt["src_b"]]
        # x = dst (a+, b-), y = dst_y (b+, a-); order destinations by id
        sw = tt["dst"] > tt["dst_y"]
        r = pd.DataFrame({"layer": layer, "head": head, "circuit": circ, "src_a": tt["src_a"], "src_b": tt["src_b"],
                          "dst_x": tt["dst"].where(~sw, tt["dst_y"]), "dst_y": tt["dst_y"].where(~sw, tt["dst"])})
        w = np.abs(np.stack([tt["weight_a"], tt["weight_b"], tt["weight_a_y"], tt["weight_b_y"]]))
        r["strength"] = w.min(0)
        out.append(r)
    return pd.concat(out, ignore_index=True).sort_values("strength", ascending=False, kind="stable")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--naive-max", type=int, default=100000)
    a = ap.parse_args()
    for n in (int(s) for s in a.sizes.split(",")):
        e = edges(n)
        t0 = time.perf_counter()
        t = find_tetrads(e)
        ts = time.perf_counter() - t0
        line = f"{len(e):>9,} edges: sparse {ts:6.2f} s, {len(t):,} tetrads"
        if n <= a.naive_max:
            t0 = time.perf_counter()
            k = naive(e)
            tn = time.perf_counter() - t0
            key = ["head", "circuit", "src_a", "src_b", "dst_x", "dst_y"]
            same = set(map(tuple, k[key].astype(str).values)) == set(map(tuple, t[key].astype(str).values))
            line += f" | naive join {tn:6.2f} s, {len(k):,} tetrads, same set: {same}, speed-up {tn / ts:.2f}x"
        print(line, flush=True)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

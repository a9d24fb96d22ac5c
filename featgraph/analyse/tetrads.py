"""Mutual-exclusion tetrads (docs/maths.md), found with sparse sign matrices.

Within one (layer, head, circuit), sources a ≠ b and destinations x ≠ y form a
tetrad when all four edges exist and sign(w_ax) = sign(w_by) = −sign(w_ay) = −sign(w_bx).
With P and N the 0/1 matrices of positive and negative edges (sources × destinations),
C = P·Nᵀ counts, for each ordered source pair (a, b), the destinations x with
w_ax > 0 > w_bx; {a, b} is in a tetrad exactly when C[a,b]·C[b,a] > 0, and its
tetrads are then X × Y with X = P_a ∩ N_b and Y = N_a ∩ P_b. Destinations are
enumerated only for those pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from featgraph.core.schema import TETRAD_COLUMNS

COLUMNS = [*list(TETRAD_COLUMNS), "like_to_like"]


def find_tetrads(edges: pd.DataFrame, min_strength: float = 0.0) -> pd.DataFrame:
    """Every tetrad of `edges` (all groups), sorted by strength (desc) then ids.

    src_a < src_b and dst_x < dst_y as strings, so each tetrad appears once;
    strength = min of the four |weights|. Edges weaker than `min_strength` cannot
    be part of a tetrad that strong, so they are dropped first.
    """
    e = edges[edges["weight"].abs() >= min_strength] if min_strength > 0 else edges
    e = e[e["weight"] != 0]
    frames = [_group(g, key) for key, g in e.groupby(["layer", "head", "circuit"], sort=True)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _dtypes().items()})
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["strength", "layer", "head", "circuit", "src_a", "src_b", "dst_x", "dst_y"],
                           ascending=[False, True, True, True, True, True, True, True], kind="stable").reset_index(drop=True)


def _dtypes() -> dict[str, str]:
    d = {c: "string" for c in ("circuit", "src_a", "src_b", "dst_x", "dst_y")}
    d |= {"layer": "int32", "head": "int32", "like_to_like": "bool"}
    d |= {c: "float32" for c in ("w_ax", "w_ay", "w_bx", "w_by", "strength")}
    return {c: d[c] for c in COLUMNS}


def _group(g: pd.DataFrame, key: tuple) -> pd.DataFrame:
    from scipy import sparse

    layer, head, circuit = key
    srcs, s = np.unique(g["src"].to_numpy(dtype=object).astype(str), return_inverse=True)
    dsts, d = np.unique(g["dst"].to_numpy(dtype=object).astype(str), return_inverse=True)
    w = g["weight"].to_numpy(np.float64)
    pos, neg = w > 0, w < 0
    shape = (len(srcs), len(dsts))
    P = sparse.csr_matrix((np.ones(pos.sum()), (s[pos], d[pos])), shape=shape)
    N = sparse.csr_matrix((np.ones(neg.sum()), (s[neg], d[neg])), shape=shape)
    C = (P @ N.T).tocsr()
    both = C.multiply(C.T).tocoo()  # C[a,b]·C[b,a] > 0
    keep = both.row < both.col
    pa, pb = both.row[keep], both.col[keep]
    if len(pa) == 0:
        return pd.DataFrame(columns=COLUMNS)
    # Enumerate destinations only for the tetrad pairs: X = P_a ∩ N_b, Y = N_a ∩ P_b.
    E = pd.DataFrame({"s": s, "d": d, "w": w})
    pairs = pd.DataFrame({"a": pa, "b": pb})
    ea = E.rename(columns={"s": "a", "w": "wa"})
    eb = E.rename(columns={"s": "b", "w": "wb"})
    common = pairs.merge(ea, on="a").merge(eb, on=["b", "d"])  # (a, b, d) with both edges
    X = common[(common["wa"] > 0) & (common["wb"] < 0)]
    Y = common[(common["wa"] < 0) & (common["wb"] > 0)]
    t = X.merge(Y, on=["a", "b"], suffixes=("_x", "_y"))
    # Order destinations by id: swap when x's id sorts after y's.
    sw = dsts[t["d_x"].to_numpy()] > dsts[t["d_y"].to_numpy()]
    dx = np.where(sw, t["d_y"], t["d_x"])
    dy = np.where(sw, t["d_x"], t["d_y"])
    w_ax = np.where(sw, t["wa_y"], t["wa_x"])
    w_ay = np.where(sw, t["wa_x"], t["wa_y"])
    w_bx = np.where(sw, t["wb_y"], t["wb_x"])
    w_by = np.where(sw, t["wb_x"], t["wb_y"])
    a_id, b_id = srcs[t["a"].to_numpy()], srcs[t["b"].to_numpy()]
    x_id, y_id = dsts[dx], dsts[dy]
    strength = np.minimum.reduce([np.abs(w_ax), np.abs(w_ay), np.abs(w_bx), np.abs(w_by)])
    n = len(t)
    out = pd.DataFrame({
        "layer": np.full(n, layer, np.int32), "head": np.full(n, head, np.int32), "circuit": circuit,
        "src_a": a_id, "src_b": b_id, "dst_x": x_id, "dst_y": y_id,
        "w_ax": w_ax.astype(np.float32), "w_ay": w_ay.astype(np.float32),
        "w_bx": w_bx.astype(np.float32), "w_by": w_by.astype(np.float32),
        "strength": strength.astype(np.float32),
        "like_to_like": (a_id == x_id) & (b_id == y_id),  # a < b and x < y already
    })
    return out.astype(_dtypes())


def summary(tetrads: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, head, circuit): tetrad count, like-to-like count, strongest strength."""
    if tetrads.empty:
        return pd.DataFrame(columns=["layer", "head", "circuit", "tetrads", "like_to_like", "max_strength"])
    g = tetrads.groupby(["layer", "head", "circuit"])
    return g.agg(tetrads=("strength", "size"), like_to_like=("like_to_like", "sum"), max_strength=("strength", "max")).reset_index()


def cosines(tetrads: pd.DataFrame, factors: dict) -> pd.DataFrame:
    """Add cos_src (the two sources' key/value vectors) and cos_dst (queries/pre-outputs) through each head.

    factors: {(head, circuit): (src_vectors [n_src, d_head], dst_vectors [n_dst, d_head])}
    indexed by feature index (the id's last component).
    """
    out = tetrads.reset_index(drop=True).copy()
    cs, cd = np.full(len(out), np.nan), np.full(len(out), np.nan)
    idx = lambda ids: np.array([int(i.rsplit("/", 1)[1]) for i in ids], dtype=np.int64)  # noqa: E731
    for (head, circuit), rows in out.groupby(["head", "circuit"]).groups.items():
        if (head, circuit) not in factors:
            continue
        S, D = (np.asarray(m, dtype=np.float64) for m in factors[(head, circuit)])
        r = out.loc[rows]
        cs[np.asarray(rows)] = _cos(S[idx(r["src_a"])], S[idx(r["src_b"])])
        cd[np.asarray(rows)] = _cos(D[idx(r["dst_x"])], D[idx(r["dst_y"])])
    out["cos_src"], out["cos_dst"] = cs.astype(np.float32), cd.astype(np.float32)
    return out


def _cos(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))

"""Benchmark graph loads and the cypher/ library on synthetic runs of 10⁵ and 10⁶ edges.

Prints, in one run: edges/s into the embedded store and into a real Neo4j (started from
scripts/neo4j-server) against a one-row-per-query baseline, and each library query's time
at the largest size on both stores, with peak memory of this process.

Usage: python bench/load.py [--sizes 100000,1000000] [--no-neo4j]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

PARAMS = {"top_edges": ["head=3", "circuit=OV"], "like_to_like": ["head=0"], "distinct_positive_qk": ["head=1"],
          "attends_to": None, "writes": None, "two_step": ["head=0"], "recurring_features": ["min_heads=2"],
          "hubs": ["head=2", "circuit=QK"], "tetrads": ["head=0", "circuit=OV"]}


def synthetic_run(root: Path, n_edges: int, n_feat: int = 16384, heads: int = 8):
    from featgraph.manifest import Manifest
    from featgraph.rundir import write_run
    from featgraph.schema import features_from_edges
    from featgraph.select import order

    rng = np.random.default_rng(0)
    per = n_edges // (heads * 2)
    frames = []
    for h in range(heads):
        for c in ("QK", "OV"):
            key = rng.choice(n_feat * n_feat, size=per, replace=False)
            s, d = key // n_feat, key % n_feat
            if c == "QK":  # some like-to-like edges, as in real heads
                s[: per // 50] = d[: per // 50]
                _, u = np.unique(s * n_feat + d, return_index=True)
                s, d = s[u], d[u]
            w = rng.standard_normal(len(s)).astype(np.float32)
            p = order(s, d, w)
            s, d, w = s[p], d[p], w[p]
            out_sae = "12-gemmascope-res-16k" if c == "QK" else "13-gemmascope-res-16k"
            frames.append(pd.DataFrame({
                "layer": 13, "head": h, "kv_head": h // 2, "circuit": c,
                "src": [f"gemma-2-2b/12-gemmascope-res-16k/{i}" for i in s], "src_index": s,
                "dst": [f"gemma-2-2b/{out_sae}/{i}" for i in d], "dst_index": d,
                "weight": w, "rank": np.arange(1, len(s) + 1), "z": w}))
    edges = pd.concat(frames, ignore_index=True)
    return write_run(root / f"run{n_edges}", edges, features_from_edges(edges), Manifest(command="bench"))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def one_row_baseline_embedded(run, n=2000):
    """Insert n edges one CREATE per query into a fresh embedded database."""
    import ladybug as lb

    from featgraph.graph.rows import NODE_PROPS, REL_PROPS, node_rows, rel_rows

    d = Path(tempfile.mkdtemp())
    db = lb.Database(str(d / "b.lbdb"))
    c = lb.Connection(db)
    c.execute("CREATE NODE TABLE Feature(" + ", ".join(f"{k} {t}" for k, t in NODE_PROPS.items()) + ", PRIMARY KEY(id))")
    c.execute("CREATE REL TABLE QK(FROM Feature TO Feature, " + ", ".join(f"{k} {t}" for k, t in REL_PROPS.items()) + ")")
    nodes = node_rows(run.features)
    frame = nodes  # noqa: F841
    c.execute("COPY Feature FROM frame")
    rows = rel_rows(run.edge_table, "QK", "b").head(n).to_dict("records")
    t0 = time.perf_counter()
    for r in rows:
        c.execute("MATCH (a:Feature {id: $src}), (b:Feature {id: $dst}) CREATE (a)-[:QK {head: $head, weight: $weight, rank: $rank}]->(b)",
                  {"src": r["src"], "dst": r["dst"], "head": r["head"], "weight": r["weight"], "rank": r["rank"]})
    return n / (time.perf_counter() - t0)


def one_row_baseline_neo4j(run, n=2000):
    import os

    from neo4j import GraphDatabase

    from featgraph.graph.rows import rel_rows

    rows = rel_rows(run.edge_table, "QK", "baseline").head(n).to_dict("records")
    with GraphDatabase.driver(os.environ["NEO4J_URI"], auth=(os.environ["NEO4J_USERNAME"], os.environ["NEO4J_PASSWORD"])) as d:
        with d.session() as s:
            t0 = time.perf_counter()
            for r in rows:
                s.run("MATCH (a:Feature {id: $src}) MATCH (b:Feature {id: $dst}) CREATE (a)-[:QK {head: $head, weight: $weight, run: 'baseline'}]->(b)", r).consume()
            rate = n / (time.perf_counter() - t0)
            s.run("MATCH ()-[r {run: 'baseline'}]->() DELETE r").consume()
    return rate


def query_times(run_dir, neo4j: bool):
    import featgraph as fg

    run = fg.open_run(run_dir)
    e = run.edge_table
    feat_q = e[e["circuit"] == "QK"]["dst"].value_counts().index[0]
    feat_v = e[e["circuit"] == "OV"]["src"].value_counts().index[0]
    out = {}
    for name, p in PARAMS.items():
        params = dict(x.split("=", 1) for x in p) if p is not None else {"feature": feat_q if name == "attends_to" else feat_v}
        run.query(name, neo4j=neo4j, **params)  # warm
        t, df = timed(lambda: run.query(name, neo4j=neo4j, **params))
        out[name] = (t, len(df))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--no-neo4j", action="store_true")
    a = ap.parse_args()
    import os

    import featgraph as fg

    work = Path(tempfile.mkdtemp(prefix="featgraph-bench-load-"))
    sizes = [int(s) for s in a.sizes.split(",")]
    runs = {n: synthetic_run(work, n) for n in sizes}
    results = []
    server = None
    if not a.no_neo4j:
        from neo4j_server import neo4j_server

        server = neo4j_server(work / "neo4j")
        info = server.__enter__()
        os.environ.update(NEO4J_URI=info["uri"], NEO4J_USERNAME=info["user"], NEO4J_PASSWORD=info["password"])
    try:
        for _n, run_dir in runs.items():
            run = fg.open_run(run_dir)
            n_e = len(run.edge_table)
            t, _ = timed(lambda: run.load())
            base = one_row_baseline_embedded(run)
            results.append((n_e, "embedded", n_e / t, base))
            print(f"{n_e:>9} edges  embedded  load {t:6.2f} s = {n_e / t:>10,.0f} edges/s   one-row baseline {base:>8,.0f} edges/s  ({n_e / t / base:,.0f}x)")
            if server:
                t, _ = timed(lambda: run.load(neo4j=True))
                base = one_row_baseline_neo4j(run)
                print(f"{n_e:>9} edges  neo4j     load {t:6.2f} s = {n_e / t:>10,.0f} edges/s   one-row baseline {base:>8,.0f} edges/s  ({n_e / t / base:,.0f}x)")
                t2, _ = timed(lambda: run.load(neo4j=True))
                print(f"{'':>9}        neo4j     re-load (replace) {t2:6.2f} s")
        big = runs[max(sizes)]
        print(f"\nlibrary queries at {len(fg.open_run(big).edge_table):,} edges (seconds, rows):")
        qe = query_times(big, False)
        qn = query_times(big, True) if server else {}
        for name in PARAMS:
            te, ne = qe[name]
            line = f"  {name:<22} embedded {te:7.3f} ({ne})"
            if qn:
                line += f"   neo4j {qn[name][0]:7.3f} ({qn[name][1]})"
            print(line)
    finally:
        if server:
            server.__exit__(None, None, None)
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

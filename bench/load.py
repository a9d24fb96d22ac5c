"""Benchmark graph loads and the cypher/ library at 10⁶ edges on both stores (issue 13), in one run.

Two synthetic runs of about 10⁶ edges at Gemma 2 2B's sizes (16,384 features per SAE, 8 heads, QK and OV):
one layer, and a whole-model atlas (26 layers × 8 heads × 2 circuits × ~2,400 edges, the features shared
across layers by id as `featgraph atlas` shares them). Neo4j 5.26 Community runs from the Maven jars with
docker-compose.yml's memory (heap 2g, page cache 1g). Printed:

- loads: the embedded store; Neo4j online (after an untimed warm-up load of other nodes: the first load, its
  steps, a re-load of the same run, a re-load that replaces changed edges) against the bare-CREATE floor
  measured on the same server right after it (the same edges in the same batches, ends found by Feature.id,
  no properties, no indexes), and the same bare CREATE with the edges' eight properties;
- the bulk path end to end: `export-neo4j` CSVs -> `neo4j-admin database import full` (the jars' AdminTool)
  -> a server up on the imported store -> its counts checked, at 10⁶ edges and at --bulk-edges;
- every library query on both stores at 10⁶ edges (the median of --repeat timed calls after one warm-up,
  each a whole `Run.query`: opening the store, the query, the DataFrame), with its answer checked against
  the pandas reference of tests/graph_refs.py (tetrads against featgraph.analyse.tetrads, the scalable
  sparse-matrix method: the brute-force reference is quadratic);
- with --profile, Neo4j's PROFILE db hits and rows for each query.

Usage: python bench/load.py [--edges 1000000] [--bulk-edges 4000000] [--repeat 3] [--no-neo4j] [--profile]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))
NEO4J_MEMORY = {"NEO4J_HEAP": "2g", "NEO4J_PAGECACHE": "1g"}  # docker-compose.yml's
N_FEAT, HEADS, LAYER = 16384, 8, 13


# ---------------------------------------------------------------- synthetic runs

def _head_edges(rng, n: int, per: int, qk: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`per` distinct (src, dst) pairs with N(0, 1) float32 weights, in featgraph's edge order. Ends are drawn
    with a heavy tail (p ~ 1 / (index + 50)^0.7, the low indices the hubs in every head and layer), as real
    heads' degrees are: it gives the hubs, tetrads and recurring hubs the queries look for."""
    from featgraph.core.select import order

    p = 1.0 / (np.arange(n) + 50.0) ** 0.7
    p /= p.sum()
    s, d = rng.choice(n, size=2 * per, p=p), rng.choice(n, size=2 * per, p=p)
    if qk:  # some like-to-like edges, as in real heads
        s[: per // 25] = d[: per // 25]
    _, first = np.unique(s * n + d, return_index=True)
    keep = np.sort(first)[:per]
    s, d = s[keep], d[keep]
    w = rng.standard_normal(len(s)).astype(np.float32)
    o = order(s, d, w)
    return s[o], d[o], w[o]


def _frame(layer: int, h: int, c: str, s, d, w, src_sae: str, dst_sae: str, model: str = "gemma-2-2b") -> pd.DataFrame:
    return pd.DataFrame({
        "layer": layer, "head": h, "kv_head": h // 2, "circuit": c,
        "src": [f"{model}/{src_sae}/{i}" for i in s], "src_index": s,
        "dst": [f"{model}/{dst_sae}/{i}" for i in d], "dst_index": d,
        "weight": w, "rank": np.arange(1, len(s) + 1), "z": w})


def _write(root: Path, name: str, frames: list[pd.DataFrame]) -> Path:
    from featgraph.core.schema import features_from_edges
    from featgraph.runs.manifest import Manifest
    from featgraph.runs.rundir import write_run

    edges = pd.concat(frames, ignore_index=True)
    return write_run(root / name, edges, features_from_edges(edges), Manifest(command="bench"))


def synthetic_run(root: Path, n_edges: int, model: str = "gemma-2-2b", name: str = "one-layer") -> Path:
    """One layer (13): 8 heads × QK/OV of n_edges / 16 edges each; keys, queries and values from SAE 12."""
    rng = np.random.default_rng(0)
    frames = []
    for h in range(HEADS):
        for c in ("QK", "OV"):
            s, d, w = _head_edges(rng, N_FEAT, n_edges // (HEADS * 2), c == "QK")
            frames.append(_frame(LAYER, h, c, s, d, w, "12-gemmascope-res-16k", f"{12 if c == 'QK' else 13}-gemmascope-res-16k", model))
    return _write(root, name, frames)


def synthetic_atlas(root: Path, n_edges: int, layers: int = 26) -> Path:
    """Layers 1..`layers`, 8 heads × QK/OV each: layer L reads SAE L - 1 and writes SAE L (OV), so an OV
    output of layer L is the node a head of layer L + 1 reads."""
    rng = np.random.default_rng(1)
    per = n_edges // (layers * HEADS * 2)
    frames = []
    for layer in range(1, layers + 1):
        for h in range(HEADS):
            for c in ("QK", "OV"):
                s, d, w = _head_edges(rng, N_FEAT, per, c == "QK")
                out = layer - 1 if c == "QK" else layer
                frames.append(_frame(layer, h, c, s, d, w, f"{layer - 1}-gemmascope-res-16k", f"{out}-gemmascope-res-16k"))
    return _write(root, "atlas", frames)


# ---------------------------------------------------------------- helpers

def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _driver():
    from neo4j import GraphDatabase

    return GraphDatabase.driver(os.environ["NEO4J_URI"], auth=(os.environ["NEO4J_USERNAME"], os.environ["NEO4J_PASSWORD"]),
                                notifications_min_severity="OFF")


PROPS = ("{layer: $layer[i], head: $head[i], kv_head: $kv_head[i], circuit: $circuit, weight: $weight[i], rank: $rank[i], "
         "z: $z[i], run: $run}")


def bare_create(run, batch: int, props: bool) -> float:
    """Edges/s of a bare CREATE of the run's edges on this server: the same batches of column lists, ends found
    by Feature.id (two index seeks an edge, as any loader by id pays), no properties (or, with `props`, the
    edges' own eight), into relationship types no index covers, nothing else written. Deleted afterwards."""
    from featgraph.graph.rows import rel_table

    stmt = ("UNWIND range(0, size($src) - 1) AS i MATCH (a:Feature {id: $src[i]}) MATCH (b:Feature {id: $dst[i]}) "
            f"CREATE (a)-[:BARE_{{rel}} {PROPS if props else ''}]->(b)")
    n = 0
    with _driver() as d, d.session() as s:
        t0 = time.perf_counter()
        for rel in ("QK", "OV"):
            for b in rel_table(run.edge_table, rel, "bare").to_batches(batch):
                cols = b.drop_columns(["circuit", "run"]).to_pydict() | {"circuit": rel, "run": "bare"} if props \
                    else b.select(["src", "dst"]).to_pydict()
                s.execute_write(lambda tx, c=cols, r=rel: tx.run(stmt.replace("{rel}", r), c).consume())
                n += b.num_rows
        rate = n / (time.perf_counter() - t0)
        for rel in ("QK", "OV"):
            s.run(f"MATCH ()-[r:BARE_{rel}]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 50000 ROWS").consume()
    return rate


def timed_load(run) -> tuple[float, dict[str, float]]:
    """Run.load(neo4j=True) with the time of each of its steps (the store's own functions, timed from outside)."""
    from featgraph.graph import neo4j_store as ns

    steps: dict[str, float] = {}
    saved = ns.Neo4jStore._write_features, ns.Neo4jStore._write_edges, ns._schema

    def clock(name, fn):
        def call(*args, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                key = name if name != "schema" else ("indexes" if args[1] == "neo4j_indexes" else "schema")
                steps[key] = steps.get(key, 0.0) + time.perf_counter() - t0
        return call

    ns.Neo4jStore._write_features = staticmethod(clock("features", saved[0]))
    ns.Neo4jStore._write_edges = staticmethod(clock("edges and Degree rows", saved[1]))
    ns._schema = clock("schema", saved[2])
    try:
        t, _ = timed(lambda: run.load(neo4j=True))
    finally:
        ns.Neo4jStore._write_features, ns.Neo4jStore._write_edges, ns._schema = \
            staticmethod(saved[0]), staticmethod(saved[1]), saved[2]
    steps["the rest (rows, fingerprint, run node, lock)"] = t - sum(steps.values())
    return t, steps


def admin_import(cmd: list[str], home: Path) -> subprocess.CompletedProcess:
    """`neo4j-admin ...` with the Maven jars' AdminTool (the tool's entry point; it needs a home and a conf), run in the
    home: it writes its import.report into its working directory."""
    (home / "conf").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NEO4J_HOME=str(home), NEO4J_CONF=str(home / "conf"))
    return subprocess.run(["java", "-Xmx2g", "-cp", str(ROOT / ".neo4j" / "lib" / "*"), "org.neo4j.cli.AdminTool", *cmd[1:]],
                          env=env, cwd=home, capture_output=True, text=True, timeout=1800)


def _tool_seconds(out: str, label: str) -> float:
    """A step's time as neo4j-admin prints it (`IMPORT DONE in 12s 159ms`), in seconds."""
    import re

    m = re.search(re.escape(label) + r" in (?:(\d+)m )?(?:(\d+)s )?(\d+)ms", out)
    return (int(m[1] or 0) * 60 + int(m[2] or 0) + int(m[3]) / 1000) if m else float("nan")


def bulk_path(run_dir: Path, work: Path, label: str) -> None:
    from neo4j_server import neo4j_server

    import featgraph as fg

    run = fg.open_run(run_dir)
    n = len(run.edge_table)
    imp, home = work / f"admin-csv-{run_dir.name}", work / f"admin-home-{run_dir.name}"
    shutil.rmtree(home, ignore_errors=True)
    t_exp, cmd = timed(lambda: run.export_neo4j(imp, force=True))
    t_imp, done = timed(lambda: admin_import(cmd, home))
    if done.returncode != 0:
        raise SystemExit(f"neo4j-admin failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    t0 = time.perf_counter()
    with neo4j_server(work / f"neo4j-bulk-{run_dir.name}", store_home=home) as info:
        t_up = time.perf_counter() - t0
        t_n, got = timed(lambda: counts(info["uri"], info["user"], info["password"]))
        t_ix, _ = timed(lambda: schema(info, imp / "schema.cypher"))
    shutil.rmtree(home, ignore_errors=True)
    e = run.edge_table
    want = {"Feature": len(run.features), "QK": int((e["circuit"] == "QK").sum()), "OV": int((e["circuit"] == "OV").sum()),
            "complete runs": 1}
    assert all(got[k] == v for k, v in want.items()) and got["Degree"] > 0, (got, want)
    done_in, rels_in = _tool_seconds(done.stdout, "IMPORT DONE"), _tool_seconds(done.stdout, "Relationship import COMPLETED")
    total = t_exp + t_imp + t_up + t_n
    print(f"  {label}, {n:,} edges: export {t_exp:.1f} s; neo4j-admin {t_imp:.1f} s ({n / t_imp:,.0f} edges/s; its import "
          f"{done_in:.1f} s = {n / done_in:,.0f} edges/s, of which the relationship step {rels_in:.1f} s = "
          f"{n / rels_in:,.0f} edges/s); server up {t_up:.1f} s; counts equal in {t_n:.1f} s")
    print(f"    end to end {total:.1f} s = {n / total:,.0f} edges/s (target >= 500,000); then schema.cypher's constraints and "
          f"indexes online in {t_ix:.1f} s")


def schema(info: dict, path: Path) -> None:
    """Run an export's schema.cypher (what `cypher-shell -f` would) and wait for its indexes."""
    from neo4j import GraphDatabase

    from featgraph.graph.library import statements

    with GraphDatabase.driver(info["uri"], auth=(info["user"], info["password"])) as d:
        for st in statements(path.read_text()):
            d.execute_query(st)
        d.execute_query("CALL db.awaitIndexes(600)")


def counts(uri: str, user: str, password: str) -> dict[str, int]:
    from neo4j import GraphDatabase

    with GraphDatabase.driver(uri, auth=(user, password)) as d:
        q = {"Feature": "MATCH (f:Feature) RETURN count(f)", "Degree": "MATCH (x:Degree) RETURN count(x)",
             "QK": "MATCH ()-[r:QK]->() RETURN count(r)", "OV": "MATCH ()-[r:OV]->() RETURN count(r)",
             "complete runs": "MATCH (r:FeatgraphRun {status: 'complete'}) RETURN count(r)"}
        return {k: d.execute_query(v).records[0][0] for k, v in q.items()}


# ---------------------------------------------------------------- queries

def cases(run) -> list[tuple[str, dict]]:
    """Each library query with parameters that make it work: the heads of one layer, the busiest features."""
    e = run.edge_table
    layer = LAYER if len(run.layers) == 1 else 13
    qk_dst = e[e["circuit"] == "QK"]["dst"].value_counts().index[0]
    ov_src = e[e["circuit"] == "OV"]["src"].value_counts().index[0]
    pair = e.iloc[int(np.argmax(e["weight"].abs().to_numpy()))]
    out = [("top_edges", {"head": 3, "layer": layer, "circuit": "OV"}), ("like_to_like", {"head": 0, "layer": layer}),
           ("distinct_positive_qk", {"head": 1, "layer": layer}), ("attends_to", {"feature": qk_dst}),
           ("writes", {"feature": ov_src}), ("two_step", {"head": 0, "layer": layer}),
           ("recurring_features", {"min_heads": 2}), ("hubs", {"head": 2, "layer": layer, "circuit": "QK"}),
           ("tetrads", {"head": 0, "layer": layer, "circuit": "OV"}), ("tetrads", {"head": 5, "layer": layer, "circuit": "QK"}),
           ("connecting_heads", {"feature": pair["src"], "other": pair["dst"]}), ("cross_layer_paths", {"layer": -1})]
    if len(run.layers) > 1:
        out += [("cross_layer_paths", {"layer": 12}), ("recurring_hubs", {"top": 100, "min_layers": 2})]
    else:
        out += [("recurring_hubs", {"top": 100, "min_layers": 1})]
    return [(n, p | {"limit": 20}) for n, p in out]


def reference(name: str, e: pd.DataFrame, params: dict) -> pd.DataFrame:
    import graph_refs

    if name != "tetrads":
        return graph_refs.REFS[name](e, **params)
    from featgraph.analyse.tetrads import find_tetrads

    g = e[(e["layer"] == params["layer"]) & (e["head"] == params["head"]) & (e["circuit"] == params["circuit"])]
    t = find_tetrads(g.drop(columns=["src_description", "dst_description", "absw"])).head(params["limit"])
    cols = ["src_a", "src_b", "dst_x", "dst_y", "w_ax", "w_ay", "w_bx", "w_by", "strength"]
    return graph_refs._described(t[cols].astype({c: "float64" for c in cols[4:]}).reset_index(drop=True), e, *cols[:4])


def profile(run, name: str, params: dict) -> tuple[int, int]:
    """(db hits, rows out of the plan's leaves and joins summed) of the query's Neo4j PROFILE."""
    from featgraph.graph import library

    q = library.resolve(name)
    bound = run._check_params(q.bind(dict(params) | {"run": run.run_id}))
    with _driver() as d, d.session() as s:
        plan = s.run("PROFILE " + q.text_for("neo4j"), bound).consume().profile
    hits, rows = 0, 0

    def walk(n):
        nonlocal hits, rows
        hits += n.get("dbHits", 0)
        rows += n.get("rows", 0)
        for c in n.get("children", []):
            walk(c)

    walk(plan)
    return hits, rows


def query_table(run_dir: Path, neo4j: bool, repeat: int, prof: bool) -> list[tuple]:
    from graph_refs import assert_same, edges_of

    import featgraph as fg

    run = fg.open_run(run_dir)
    e = edges_of(run)
    rows = []
    for name, params in cases(run):
        want = reference(name, e, params)
        line = [name, ", ".join(f"{k}={v}" for k, v in params.items() if k not in ("limit", "feature", "other")), len(want)]
        for store in ("embedded", "neo4j") if neo4j else ("embedded",):
            on = store == "neo4j"
            got = run.query(name, neo4j=on, **params)  # warm-up
            assert_same(got, want, f"{store} {name} {params}")
            times = [timed(lambda: run.query(name, neo4j=on, **params))[0] for _ in range(repeat)]
            line.append(statistics.median(times))
        if prof and neo4j:
            line.append(profile(run, name, params))
        rows.append(tuple(line))
    return rows


def print_queries(title: str, rows: list[tuple], neo4j: bool, prof: bool) -> None:
    print(f"\n{title} (median seconds; every answer equal to the pandas reference)")
    head = f"  {'query':<22} {'parameters':<32} {'rows':>5} {'embedded':>9}" + (f" {'neo4j':>8}" if neo4j else "")
    print(head + ("   neo4j db hits / rows" if prof else ""))
    for r in rows:
        line = f"  {r[0]:<22} {r[1]:<32} {r[2]:>5} {r[3]:>9.3f}" + (f" {r[4]:>8.3f}" if neo4j else "")
        if prof and neo4j:
            line += f"   {r[5][0]:>10,} / {r[5][1]:,}"
        print(line)
    worst_e = max(r[3] for r in rows)
    print(f"  slowest: embedded {worst_e:.3f} s (target < 0.3)" + (f", neo4j {max(r[4] for r in rows):.3f} s (target < 2)" if neo4j else ""))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-neo4j", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print Neo4j PROFILE db hits and rows per query")
    ap.add_argument("--bulk-edges", type=int, default=4_000_000, help="also time the bulk path on a run this big (0: skip)")
    ap.add_argument("--work", type=Path, help="keep the runs and stores here (default: a temporary folder)")
    a = ap.parse_args()

    import featgraph as fg
    from featgraph.api.run import Run
    from featgraph.graph.neo4j_store import BATCH

    print(f"machine: {os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    work = (a.work or Path(tempfile.mkdtemp(prefix="featgraph-bench-load-"))).resolve()  # neo4j-admin runs in another cwd
    work.mkdir(parents=True, exist_ok=True)
    t, one = timed(lambda: synthetic_run(work, a.edges))
    t2, atlas = timed(lambda: synthetic_atlas(work, a.edges))
    n_one, n_atlas = len(fg.open_run(one).edge_table), len(fg.open_run(atlas).edge_table)
    print(f"synthetic runs: one layer {n_one:,} edges, atlas {n_atlas:,} edges over 26 layers ({t + t2:.0f} s to make)")

    print("\nloads")
    for label, d in (("one layer", one), ("atlas", atlas)):
        run = fg.open_run(d)
        t, _ = timed(run.load)
        print(f"  embedded  {label:<9} {t:6.1f} s = {len(run.edge_table) / t:>9,.0f} edges/s")
    q_one = q_atlas = None
    if not a.no_neo4j:
        from neo4j_server import neo4j_server

        os.environ.update(NEO4J_MEMORY)
        batch = int(os.environ.get("FEATGRAPH_NEO4J_BATCH") or BATCH)
        with neo4j_server(work / "neo4j-online") as info:
            os.environ.update(NEO4J_URI=info["uri"], NEO4J_USERNAME=info["user"], NEO4J_PASSWORD=info["password"])
            warm = fg.open_run(synthetic_run(work, 50_000, "warm-up-model", "warm-up"))  # the JIT warms up first, on other nodes
            warm.load(neo4j=True)
            run = fg.open_run(one)
            t, steps = timed_load(run)
            rate = n_one / t
            floor, floor_props = bare_create(run, batch, False), bare_create(run, batch, True)
            print(f"  neo4j     one layer {t:6.1f} s = {rate:>9,.0f} edges/s   bare-CREATE floor {floor:>9,.0f} edges/s   "
                  f"ratio {rate / floor:.2f} (target >= 0.8)")
            print(f"            steps: {', '.join(f'{k} {v:.1f} s' for k, v in steps.items())}")
            print(f"            the same bare CREATE with the edges' eight properties: {floor_props:,.0f} edges/s "
                  f"(the load is {rate / floor_props:.2f} x that)")
            t2, _ = timed(lambda: run.load(neo4j=True))
            print(f"  neo4j     re-load of the same run {t2:6.1f} s ({t2 / t:.2f} x the first load; target <= 1)")
            q_one = query_table(one, True, a.repeat, a.profile)
            changed = Run(run.path, run.manifest, run.edge_table.assign(weight=run.edge_table["weight"] * 0.5), run.features)
            t3, _ = timed(lambda: changed.load(neo4j=True))
            print(f"  neo4j     re-load replacing every edge (changed weights) {t3:6.1f} s ({t3 / t:.2f} x the first load)")
        with neo4j_server(work / "neo4j-atlas") as info:
            os.environ.update(NEO4J_URI=info["uri"], NEO4J_USERNAME=info["user"], NEO4J_PASSWORD=info["password"])
            run = fg.open_run(atlas)
            t, _ = timed(lambda: run.load(neo4j=True))
            print(f"  neo4j     atlas     {t:6.1f} s = {n_atlas / t:>9,.0f} edges/s")
            q_atlas = query_table(atlas, True, a.repeat, a.profile)

        print("\nbulk path: export-neo4j -> neo4j-admin database import full -> server up -> counts checked")
        bulk_path(one, work, "one layer")
        if a.bulk_edges:
            bulk_path(synthetic_run(work, a.bulk_edges, name="bulk"), work, "larger")

    q_one = q_one or query_table(one, False, a.repeat, False)
    q_atlas = q_atlas or query_table(atlas, False, a.repeat, False)
    print_queries(f"library queries, one layer, {n_one:,} edges", q_one, not a.no_neo4j, a.profile)
    print_queries(f"library queries, atlas of 26 layers, {n_atlas:,} edges", q_atlas, not a.no_neo4j, a.profile)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark `featgraph atlas`: the whole Gemma 2 2B (layers 1-25, 8 heads, QK and OV) at 16k in one graph.

Synthetic values in the real formats and at the real sizes: every layer's attention tensors (d_model 2304,
8 query and 4 key/value heads of 256) in safetensors shards with an index and config.json, and a Gemma Scope
params.npz (16,384 features) at each `gemma-scope-2b-pt-res/layer_L/width_16k/average_l0_X/` path, X the canonical
L0, so the ids come from the paths as for a real download (`L-gemmascope-res-16k`). Two real-size SAE files are
hard-linked into the 26 paths to save disk (the atlas reads and hashes each path as it would a distinct file).

Measured, each in a fresh subprocess (so peak memory is its own): the atlas end to end (wall time, peak RSS, and
the peak so far after each layer, which must not grow with the layers beyond the combined edge table), then the
embedded store's load of the whole-model graph and three cross-layer queries on it.

With --bare, the atlas' bare products are timed too, in their own subprocess. The bare products are the same
matrix products the atlas makes, by the same featgraph calls, with nothing else: for each layer, head and circuit in
the atlas' order, (1) the factor products — circuit_factors' W_dec·W_Qᵀ etc., a key/value head's keys and values
computed once for the query heads sharing it, as the atlas does — and (2) the block products S = src @ dst.T in
featgraph's CPU tiles (select.block_products: select's own block shape, buffer and block calls; the tiles are also the
fastest shape for the products alone, bench/select_tiles.py), nothing selected. Not in them:
loading and checking the inputs, the moments, the selection (screening, exact re-scoring, ordering), hashing and
writing. The atlas' ratio to them is everything featgraph adds to the arithmetic it cannot avoid; issue 20's target is
1.15. Both ratios are printed: to the bare products (blocks + factors) and to the block products alone (whose floor is
1 + the factors' share of the block work: 2·d_model/n per matrix without the key/value sharing, 28% at Gemma 2
2B's 16k, 21% with it).
--bare-layers K times them on the first K layers only and scales by layers/K (printed as such: every layer has the
same shapes). --reps R makes R (atlas, bare products) pairs, alternating, and prints each pair's ratios and their
sums' (the machine is shared: a ratio within a pair, minutes apart, is the figure; report the load average with it).

With --engines process,ray,ray2 the atlas is made once per engine (each in a fresh subprocess, into its own folder):
`process` the single-process atlas, `ray` fg.atlas(ray=True) on a local Ray runtime of this machine's cores (one CPU
per task), `ray2` a two-node local cluster (ray.cluster_utils.Cluster, half the cores per node); every address on
127.0.0.1. Their edges must be identical; their wall times give Ray's overhead on the same cores.

Usage: python bench/atlas.py [--layers 1-25] [--n 16384] [--heads 0-7] [--work DIR] [--bare] [--bare-layers K] [--reps R]
       python bench/atlas.py --layers 1 --bare --reps 2 --no-store   # one 16k layer's ratio to its bare products
       python bench/atlas.py --layers 1-2 --n 2048      # a small version in about a minute
       python bench/atlas.py --layers 1-4 --n 4096 --engines process,ray,ray2 --no-store   # Ray against one process
       python bench/atlas.py --store DIR                # the store and queries of an atlas made before
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D_MODEL, N_HEADS, N_KV, D_HEAD, N_LAYERS, K = 2304, 8, 4, 256, 26, 1000
# The canonical L0 of Gemma Scope's 16k residual SAE of each layer (featgraph.load.sae.CANONICAL_L0).
L0 = (105, 102, 141, 59, 124, 68, 70, 69, 71, 73, 77, 80, 82, 84, 84, 78, 78, 77, 74, 73, 71, 70, 72, 75, 73, 116)


def make_model(root: Path) -> Path:
    """config.json, an index and one shard per layer holding that layer's six attention tensors (float32)."""
    from safetensors.numpy import save_file

    model = root / "gemma-2-2b"
    if (model / "config.json").exists():
        return model
    tmp = root / ".gemma-2-2b.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weight_map = {}
    for L in range(N_LAYERS):
        rng = np.random.default_rng(L)
        p = f"model.layers.{L}"
        t = {
            f"{p}.self_attn.q_proj.weight": rng.standard_normal((N_HEADS * D_HEAD, D_MODEL), dtype=np.float32) * 0.02,
            f"{p}.self_attn.k_proj.weight": rng.standard_normal((N_KV * D_HEAD, D_MODEL), dtype=np.float32) * 0.02,
            f"{p}.self_attn.v_proj.weight": rng.standard_normal((N_KV * D_HEAD, D_MODEL), dtype=np.float32) * 0.02,
            f"{p}.self_attn.o_proj.weight": rng.standard_normal((D_MODEL, N_HEADS * D_HEAD), dtype=np.float32) * 0.02,
            f"{p}.input_layernorm.weight": rng.standard_normal(D_MODEL, dtype=np.float32) * 0.5,
            f"{p}.post_attention_layernorm.weight": rng.standard_normal(D_MODEL, dtype=np.float32) * 0.5,
        }
        shard = f"model-{L + 1:05d}-of-{N_LAYERS:05d}.safetensors"
        save_file(t, str(tmp / shard))
        weight_map |= {k: shard for k in t}
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp / "config.json").write_text(json.dumps({
        "model_type": "gemma2", "hidden_size": D_MODEL, "num_attention_heads": N_HEADS, "num_key_value_heads": N_KV,
        "head_dim": D_HEAD, "num_hidden_layers": N_LAYERS, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "attn_logit_softcapping": 50.0, "intermediate_size": 9216, "vocab_size": 256000}))
    os.replace(tmp, model)
    return model


def make_saes(root: Path, n: int) -> str:
    """Two real-size params.npz hard-linked into every layer's Gemma Scope path; returns the template."""
    base = root / f"saes{n}"
    release = base / "gemma-scope-2b-pt-res"
    files = []
    for seed in (1, 2):
        f = base / f"params{seed}.npz"
        if not f.exists():
            rng = np.random.default_rng(seed)
            W = rng.standard_normal((n, D_MODEL), dtype=np.float32)
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            W *= rng.uniform(0.5, 1.5, (n, 1)).astype(np.float32)
            base.mkdir(parents=True, exist_ok=True)
            with open(f.with_suffix(".tmp"), "wb") as fh:
                np.savez(fh, W_enc=np.ascontiguousarray(W.T), W_dec=W, b_enc=np.zeros(n, np.float32),
                         b_dec=(rng.standard_normal(D_MODEL) * 0.1).astype(np.float32), threshold=np.zeros(n, np.float32))
            os.replace(f.with_suffix(".tmp"), f)
        files.append(f)
    for L in range(N_LAYERS):
        p = release / f"layer_{L}" / "width_16k" / f"average_l0_{L0[L]}" / "params.npz"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            os.link(files[L % 2], p)
    return str(release / "layer_{layer}" / "width_16k" / "average_l0_{l0}" / "params.npz")


# ------------------------------------------------------------ measured in a subprocess

def _hwm_mib() -> float:
    """The process' peak resident set so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_atlas(model: str, template: str, layers: list[int], heads: list[int], out: str, result: str,
                engine: str = "process") -> None:
    if engine != "process":  # Ray reads these when first imported: every address 127.0.0.1, no usage report
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import featgraph as fg

    # The library's imports (torch, pandas, …) are a process' start, not the atlas': made before the clock starts,
    # as in the bare child. The CPU time is the process' from the clock's start (both threads).
    import featgraph.api.compute
    import featgraph.api.multilayer
    import featgraph.api.run

    cluster = None
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    ray: bool | str | None = None
    if engine == "ray":  # started here, timed apart; fg.atlas(ray=True) then uses it as its local runtime
        import ray as ray_module

        ray_module.init(include_dashboard=False, log_to_driver=False)
        ray = True
    elif engine == "ray2":
        from ray.cluster_utils import Cluster

        per_node = max(1, (os.cpu_count() or 2) // 2)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": per_node})
        cluster.add_node(num_cpus=per_node)
        cluster.wait_for_nodes()
        ray = cluster.address
    t_cluster = time.perf_counter() - t_start

    per_layer = len(heads) * 2
    t0, c0 = time.perf_counter(), time.process_time()
    marks: list[tuple[float, float]] = []
    state = {"done": 0}

    def progress(description: str, total):
        def advance(n: int) -> None:
            before = state["done"] // per_layer
            state["done"] += n
            for _ in range(state["done"] // per_layer - before):
                marks.append((time.perf_counter() - t0, _hwm_mib()))
        return advance if description.startswith("atlas:") else (lambda n: None)

    run = fg.atlas(model=model, layers=layers, out=out, heads=heads, top_k=K, device="cpu", labels=False,
                   sae_template=lambda L: template.format(layer=L, l0=L0[L]), progress=progress, ray=ray)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if cluster is not None:
        cluster.shutdown()
    if engine == "ray":
        ray_module.shutdown()
    Path(result).write_text(json.dumps({"wall": wall, "cpu": cpu, "load": os.getloadavg(), "load0": load0,
                                        "peak_mib": _hwm_mib(), "marks": marks, "edges": len(run.edge_table),
                                        "features": len(run.features), "layers": run.layers, "cluster_start": t_cluster}))


def child_bare(model: str, template: str, layers: list[int], heads: list[int], result: str) -> None:
    """The bare products of `layers` (module docstring): for each (head, circuit) in the atlas' order, its two factors
    by featgraph's circuit_factors (a key/value head's shared by its query heads, as the atlas shares them) and its
    block products S = src @ dst.T by featgraph's own block calls (select.block_products: select's CPU tiles, one
    reused buffer), nothing selected; loading is not timed."""
    import torch

    from featgraph.core import select
    from featgraph.core.circuits import Conventions, circuit_factors
    from featgraph.load import model as model_io
    from featgraph.load import sae as sae_io

    sel = select.Selection().resolve(torch.device("cpu"))
    t_fac = t_blk = c_fac = c_blk = 0.0
    load0 = os.getloadavg()
    with torch.inference_mode():
        for L in layers:
            attn = model_io.load_attention(model, L)
            W_dec = sae_io.load(template.format(layer=L - 1, l0=L0[L - 1]), ("W_dec",)).W_dec
            W_enc = sae_io.load(template.format(layer=L, l0=L0[L]), ("W_enc",)).W_enc
            shared: dict = {}
            for h in heads:
                for circ in ("QK", "OV"):
                    w, c = time.perf_counter(), time.process_time()
                    f = circuit_factors(attn, W_dec, W_enc, h, circ, Conventions(), shared)
                    t_fac += time.perf_counter() - w
                    c_fac += time.process_time() - c
                    w, c = time.perf_counter(), time.process_time()
                    select.block_products(f.src, f.dst, sel)
                    t_blk += time.perf_counter() - w
                    c_blk += time.process_time() - c
    Path(result).write_text(json.dumps({"factors": t_fac, "blocks": t_blk, "factors_cpu": c_fac, "blocks_cpu": c_blk,
                                        "load": [load0[0], os.getloadavg()[0]], "peak_mib": _hwm_mib()}))


# The query library's cross-layer queries (cypher/), when this featgraph has them, with their parameters.
LIBRARY = {"cross_layer_paths": {"limit": 20}, "connecting_heads": None, "recurring_hubs": {"top": 100, "min_layers": 2}}
# The same questions as literal Cypher (what any featgraph runs).
QUERIES = {
    # the strongest 2-step paths across layers: a value feature -OV(layer L)-> feature -QK key(layer L+1)-> query feature
    "strongest OV(L) -> QK key(L+1) paths": (
        "MATCH (a:Feature)-[o:OV]->(b:Feature)-[q:QK]->(c:Feature) WHERE q.layer = o.layer + 1 AND o.rank <= $r AND q.rank <= $r "
        "RETURN a.id AS value, o.layer AS ov_layer, o.head AS ov_head, b.id AS via, q.head AS qk_head, c.id AS query, "
        "o.weight * q.weight AS product ORDER BY abs(product) DESC LIMIT 20", {"r": 200}),
    # the heads of all layers joining two given features in two steps (a -> b -> c, any circuits and layers)
    "heads joining two features in 2 steps": (
        "MATCH (a:Feature {id: $a})-[r1]->(b:Feature)-[r2]->(c:Feature {id: $c}) "
        "RETURN r1.layer AS layer1, r1.head AS head1, r1.circuit AS circuit1, b.id AS via, r2.layer AS layer2, "
        "r2.head AS head2, r2.circuit AS circuit2, r1.weight * r2.weight AS product ORDER BY abs(product) DESC", None),
    # features that are hubs (≥ 8 edges in one layer's heads) in several layers
    "hubs recurring across layers": (
        "MATCH (f:Feature)-[r]-() WITH f, r.layer AS layer, count(*) AS degree WHERE degree >= $k "
        "WITH f, count(layer) AS layers, sum(degree) AS edges WHERE layers >= 2 "
        "RETURN f.id AS feature, layers, edges ORDER BY layers DESC, edges DESC LIMIT 25", {"k": 8}),
}


def child_store(out: str, result: str) -> None:
    import featgraph as fg

    t0 = time.perf_counter()
    run = fg.open_run(out)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = run.load()
    t_load = time.perf_counter() - t0
    e = run.edge_table
    ov = e[e["circuit"] == "OV"][["layer", "src", "dst", "weight"]]
    path = ov.merge(ov.assign(layer=ov["layer"] - 1), left_on=["layer", "dst"], right_on=["layer", "src"])  # OV(L), OV(L+1)
    if len(path):  # the ends of the strongest OV -> OV path across two layers
        best = path.loc[(path["weight_x"] * path["weight_y"]).abs().idxmax()]
        a, c = str(best["src_x"]), str(best["dst_y"])
    else:  # one layer: no such path
        a, c = str(e["src"].iloc[0]), str(e["dst"].iloc[0])
    times = {}

    def timed(name, query, params):
        run.query(query, **params)  # the first call opens the store; time the second
        t0 = time.perf_counter()
        rows = run.query(query, **params)
        times[name] = (time.perf_counter() - t0, len(rows))

    from featgraph.graph import library

    for name, params in LIBRARY.items():
        try:
            library.resolve(name)
        except Exception:
            continue  # an older featgraph: the literal queries below stand in
        timed(f"library {name}", name, params or {"feature": a, "other": str(e.loc[e["src"] == a, "dst"].iloc[0])})
    for name, (cypher, params) in QUERIES.items():
        timed(name, cypher, params or {"a": a, "c": c})
    Path(result).write_text(json.dumps({"open": t_open, "load": t_load, "counts": counts, "queries": times,
                                        "peak_mib": _hwm_mib()}))


def measure(*args: str) -> dict:
    with tempfile.TemporaryDirectory() as td:
        res = Path(td) / "r.json"
        subprocess.run([sys.executable, __file__, "--child", *args, str(res)], check=True)
        return json.loads(res.read_text())


def parse_range(text: str) -> list[int]:
    from featgraph.api.multilayer import parse_layers

    return list(parse_layers(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="1-25")
    ap.add_argument("--heads", default="0-7")
    ap.add_argument("--n", type=int, default=16384, help="SAE width")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "featgraph-bench-atlas")
    ap.add_argument("--store", type=Path, help="only load and query this finished atlas", metavar="DIR")
    ap.add_argument("--bare", action="store_true", help="also time the bare matrix products of the same layers")
    ap.add_argument("--bare-layers", type=int, default=0, help="time the bare products on this many layers only (0: all)")
    ap.add_argument("--reps", type=int, default=1, help="with --bare: this many (atlas, bare products) pairs, alternating")
    ap.add_argument("--engines", default="process", help="process, ray (local runtime), ray2 (two local nodes); comma-separated")
    ap.add_argument("--no-store", action="store_true", help="skip the store's load and queries")
    a = ap.parse_args()

    if a.store:
        report_store(measure("store", str(a.store)))
        return
    import torch

    layers, heads = parse_range(a.layers), parse_range(a.heads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    t0 = time.perf_counter()
    model, template = make_model(a.work), make_saes(a.work, a.n)
    print(f"inputs ready in {time.perf_counter() - t0:.0f} s ({a.work})")
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    results, tables = {}, {}
    for engine in engines:
        out = a.work / f"atlas-{a.n}-{a.layers}-{a.heads}" / engine
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        results[engine] = measure("atlas", str(model), template, json.dumps(layers), json.dumps(heads), str(out), engine)
        tables[engine] = _sorted_edges(out)
        report_atlas(a, layers, engine, results[engine])
    if len(engines) > 1:
        first = engines[0]
        for engine in engines[1:]:
            same = tables[engine].equals(tables[first])
            print(f"\n{engine} against {first}: edges {'identical' if same else 'DIFFERENT'} after sorting; wall "
                  f"{results[engine]['wall']:.1f} s against {results[first]['wall']:.1f} s "
                  f"({100 * (results[engine]['wall'] / results[first]['wall'] - 1):+.0f}%; cluster start "
                  f"{results[engine]['cluster_start']:.1f} s of it outside the atlas call)")
    if a.bare:
        report_bare(a, model, template, layers, heads, engines[0], results[engines[0]])
    if a.no_store:
        return
    out = a.work / f"atlas-{a.n}-{a.layers}-{a.heads}" / engines[0]
    report_store(measure("store", str(out)))
    print(f"\nthe atlas is kept in {out} (bench/atlas.py --store {out} measures its store again)")


def report_bare(a, model: Path, template: str, layers: list[int], heads: list[int], engine: str, first: dict) -> None:
    """The bare products, then (--reps R) R−1 more pairs of atlas and bare products, alternating, each in its own
    subprocess: the ratios of each pair (taken minutes apart, under whatever load the machine had then) and of all."""
    sample = layers[: a.bare_layers] if a.bare_layers else layers
    scale = len(layers) / len(sample)
    said = f" (timed on layers {sample[0]}-{sample[-1]}, scaled x{scale:g})" if scale != 1 else ""
    out = a.work / f"atlas-{a.n}-{a.layers}-{a.heads}" / engine
    pairs = []
    for i in range(max(1, a.reps)):
        if i:
            shutil.rmtree(out, ignore_errors=True)
            r = measure("atlas", str(model), template, json.dumps(layers), json.dumps(heads), str(out), engine)
            print(f"\natlas ({engine}) again: wall {r['wall']:.1f} s, CPU {r['cpu']:.0f} s, peak RSS {r['peak_mib']:.0f} MiB, "
                  f"load average {r['load0'][0]:.1f} -> {r['load'][0]:.1f}")
        else:
            r = first
        b = measure("bare", str(model), template, json.dumps(sample), json.dumps(heads))
        b = {k: (v * scale if k in ("blocks", "factors", "blocks_cpu", "factors_cpu") else v) for k, v in b.items()}
        pairs.append((r, b))
        print(f"\nbare products of the same {len(layers)} layers{said}: blocks {b['blocks']:.1f} s wall "
              f"({b['blocks_cpu']:.0f} s CPU), factors {b['factors']:.1f} s wall ({b['factors_cpu']:.0f} s CPU); "
              f"peak RSS {b['peak_mib']:.0f} MiB; load average {b['load'][0]:.1f} -> {b['load'][1]:.1f}")
        _ratios(f"  pair {i + 1}: {engine} atlas", r["wall"], r["cpu"], b)
    if len(pairs) > 1:
        tot = {k: sum(b[k] for _, b in pairs) for k in ("blocks", "factors", "blocks_cpu", "factors_cpu")}
        _ratios(f"  all {len(pairs)} pairs summed: atlas", sum(r["wall"] for r, _ in pairs), sum(r["cpu"] for r, _ in pairs), tot)


def _ratios(head: str, wall: float, cpu: float, b: dict) -> None:
    bare, bare_cpu = b["blocks"] + b["factors"], b["blocks_cpu"] + b["factors_cpu"]
    print(f"{head} / bare products (blocks + factors): {wall / bare:.3f} wall, {cpu / bare_cpu:.3f} CPU "
          f"(issue 20's target: 1.15); / block products alone: {wall / b['blocks']:.3f} wall, {cpu / b['blocks_cpu']:.3f} CPU "
          f"(the factors are {100 * b['factors'] / b['blocks']:.0f}% of the blocks' wall)")


def _sorted_edges(out: Path):
    import pandas as pd

    e = pd.read_parquet(out / "edges.parquet")
    return e.sort_values(["layer", "head", "circuit", "src", "dst"]).reset_index(drop=True)


def report_atlas(a, layers: list[int], engine: str, r: dict) -> None:
    print(f"\natlas ({engine}): layers {a.layers}, heads {a.heads}, QK+OV, top {K}, {a.n:,} features per SAE")
    print(f"  wall {r['wall']:.1f} s ({r['wall'] / 60:.1f} min; {r['wall'] / len(layers):.1f} s per layer), "
          f"peak RSS {r['peak_mib']:.0f} MiB")
    print(f"  CPU time {r['cpu']:.0f} s ({r['cpu'] / r['wall']:.2f} cores busy on average; load average at the end "
          f"{r['load'][0]:.1f}, {r['load'][1]:.1f}, {r['load'][2]:.1f} on {os.cpu_count()} cores: other processes shared them)")
    print(f"  {r['edges']:,} edges, {r['features']:,} features")
    print("  after layer k: elapsed s, peak RSS so far MiB")
    for i, (t, m) in enumerate(r["marks"], 1):
        if i <= 3 or i == len(r["marks"]) or i % 5 == 0:
            print(f"    {i:>3}  {t:7.0f}  {m:7.0f}")


def report_store(s: dict) -> None:
    print(f"\nembedded store: open {s['open']:.2f} s, load {s['load']:.2f} s ({s['counts']['nodes']:,} nodes, "
          f"{s['counts']['QK']:,} QK and {s['counts']['OV']:,} OV edges), peak RSS {s['peak_mib']:.0f} MiB")
    for name, (t, rows) in s["queries"].items():
        print(f"  {name:<42} {t:6.3f} s  ({rows} rows)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind = sys.argv[2]
        if kind == "atlas":
            model, template, layers, heads, out, engine, res = sys.argv[3:10]
            child_atlas(model, template, json.loads(layers), json.loads(heads), out, res, engine)
        elif kind == "bare":
            model, template, layers, heads, res = sys.argv[3:8]
            child_bare(model, template, json.loads(layers), json.loads(heads), res)
        else:
            child_store(sys.argv[3], sys.argv[4])
    else:
        main()

"""Benchmark `featgraph extract` at Gemma 2 2B's real sizes against the post's method.

Builds synthetic inputs in the real formats (a layer-13 safetensors shard with
its index and config.json, Gemma Scope params.npz files) and, in one run,
measures each variant in a fresh subprocess (so peak RSS is its own):

  (a) the post's method: full per-head float32 matrices (numpy), then a full
      argsort of |S| for the top K;
  (a') a stronger naive baseline: full matrices, then torch.topk;
  (b) `featgraph extract` end to end (load + factors + blocked selection + write);
  (c) the blocked matrix products alone (same blocks, no selection).

Usage: python bench/extract.py [--n 16384] [--big 65536] [--heads-all] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D_MODEL, N_HEADS, N_KV, D_HEAD, LAYER, K = 2304, 8, 4, 256, 13, 1000


def make_inputs(root: Path, n: int) -> dict:
    """Layer-13 tensors + config + two SAEs of width n, once per (root, n)."""
    from safetensors.numpy import save_file

    root.mkdir(parents=True, exist_ok=True)
    model = root / "model"
    if not (model / "config.json").exists():
        rng = np.random.default_rng(0)
        model.mkdir(exist_ok=True)
        p = f"model.layers.{LAYER}"
        t = {
            f"{p}.self_attn.q_proj.weight": rng.normal(0, 0.02, (N_HEADS * D_HEAD, D_MODEL)),
            f"{p}.self_attn.k_proj.weight": rng.normal(0, 0.02, (N_KV * D_HEAD, D_MODEL)),
            f"{p}.self_attn.v_proj.weight": rng.normal(0, 0.02, (N_KV * D_HEAD, D_MODEL)),
            f"{p}.self_attn.o_proj.weight": rng.normal(0, 0.02, (D_MODEL, N_HEADS * D_HEAD)),
            f"{p}.input_layernorm.weight": rng.normal(0, 0.5, D_MODEL),
            f"{p}.post_attention_layernorm.weight": rng.normal(0, 0.5, D_MODEL),
        }
        t = {k: v.astype(np.float32) for k, v in t.items()}
        shard = "model-00002-of-00003.safetensors"
        save_file(t, str(model / shard))
        (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {k: shard for k in t}}))
        (model / "config.json").write_text(json.dumps({
            "model_type": "gemma2", "hidden_size": D_MODEL, "num_attention_heads": N_HEADS, "num_key_value_heads": N_KV,
            "head_dim": D_HEAD, "num_hidden_layers": 26, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "attn_logit_softcapping": 50.0}))
    saes = {}
    for name, seed in (("in", 1), ("out", 2)):
        path = root / f"sae_{name}_{n}" / "params.npz"
        if not path.exists():
            rng = np.random.default_rng(seed)
            path.parent.mkdir(exist_ok=True)
            W = rng.standard_normal((n, D_MODEL), dtype=np.float32)
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            W *= rng.uniform(0.5, 1.5, (n, 1)).astype(np.float32)
            np.savez(path, W_enc=np.ascontiguousarray(W.T), W_dec=W, b_enc=np.zeros(n, np.float32),
                     b_dec=np.zeros(D_MODEL, np.float32), threshold=np.zeros(n, np.float32))
        saes[name] = path
    return {"model": model, "sae_in": saes["in"], "sae_out": saes["out"]}


# ------------------------------------------------------------ variants (run in a subprocess)

def _factors(inp, heads):
    import torch

    from featgraph.circuits import circuit_factors
    from featgraph.load import model as model_io
    from featgraph.load import sae as sae_io

    attn = model_io.load_attention(str(inp["model"]), LAYER)
    W_dec = sae_io.load(str(inp["sae_in"]), ("W_dec",)).W_dec
    W_enc = sae_io.load(str(inp["sae_out"]), ("W_enc",)).W_enc
    with torch.inference_mode():
        for h in heads:
            for c in ("QK", "OV"):
                yield circuit_factors(attn, W_dec, W_enc, h, c)


def variant_post(inp, heads):
    """Full matrix in numpy float32, then argsort of everything (as the post did)."""
    out = []
    for f in _factors(inp, heads):
        S = f.src.numpy() @ f.dst.numpy().T
        flat = np.abs(S).ravel()
        top = np.argsort(flat, kind="stable")[::-1][:K]
        out.append(np.unravel_index(top, S.shape))
        del S, flat
    return out


def variant_topk(inp, heads):
    import torch

    out = []
    for f in _factors(inp, heads):
        S = f.src @ f.dst.T
        top = torch.topk(S.abs().flatten(), K).indices
        out.append(np.unravel_index(top.numpy(), S.shape))
        del S
    return out


def variant_featgraph(inp, heads):
    import featgraph as fg

    out = Path(tempfile.mkdtemp()) / "run"
    fg.extract(model=str(inp["model"]), layer=LAYER, sae_in=str(inp["sae_in"]), sae_out=str(inp["sae_out"]),
               heads=heads, top_k=K, device="cpu", sae_in_id="12-bench-in", sae_out_id="13-bench-out",
               out=out, labels=False)
    import pandas as pd

    e = pd.read_parquet(out / "edges.parquet")
    return [(g["src_index"].to_numpy(), g["dst_index"].to_numpy()) for _, g in e.groupby(["head", "circuit"], sort=False)]


def variant_matmul(inp, heads):
    """The blocked products alone: the floor for any exact method."""

    from featgraph.select import Selection

    sel = Selection()
    for f in _factors(inp, heads):
        rows = max(1, sel.block_bytes // (f.dst.shape[0] * 12))
        for r0 in range(0, f.src.shape[0], rows):
            blk = f.src[r0 : r0 + rows] @ f.dst.T
            del blk
    return []


VARIANTS = {"post": variant_post, "topk": variant_topk, "featgraph": variant_featgraph, "matmul": variant_matmul}


def child(name: str, inp: dict, heads: list[int], result: Path) -> None:
    t0 = time.perf_counter()
    edges = VARIANTS[name](inp, heads)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    keys = [sorted(zip(map(int, s), map(int, d))) for s, d in edges]
    result.write_text(json.dumps({"wall": wall, "peak_mib": peak, "edges": keys}))


def measure(name: str, inp: dict, heads: list[int]) -> dict:
    with tempfile.TemporaryDirectory() as td:
        res = Path(td) / "r.json"
        arg = json.dumps({k: str(v) for k, v in inp.items()})
        subprocess.run([sys.executable, __file__, "--child", name, arg, ",".join(map(str, heads)), str(res)], check=True)
        return json.loads(res.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--big", type=int, default=65536, help="width for the large run (0 to skip)")
    ap.add_argument("--heads-all", action="store_true", help="also time all 8 heads for (a), (b), (c)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "featgraph-bench")
    a = ap.parse_args()

    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    inp = make_inputs(a.work, a.n)
    rows = []
    for label, heads in [("1 head", [0])] + ([("8 heads", list(range(N_HEADS)))] if a.heads_all else []):
        r = {v: measure(v, inp, heads) for v in ("post", "topk", "featgraph", "matmul")}
        same = r["post"]["edges"] == r["featgraph"]["edges"]
        for v in ("post", "topk", "featgraph", "matmul"):
            rows.append((f"{label} n={a.n}", v, r[v]["wall"], r[v]["peak_mib"]))
        print(f"\n{label}, n={a.n}, QK+OV, K={K}: same edges as the post's method: {same}")
        print(f"  (b) featgraph vs (a) post:        {r['post']['wall'] / r['featgraph']['wall']:.1f}x faster")
        print(f"  (b) featgraph vs (a') full+topk:   {r['topk']['wall'] / r['featgraph']['wall']:.2f}x faster")
        print(f"  (b) featgraph over (c) matmuls:    +{100 * (r['featgraph']['wall'] / r['matmul']['wall'] - 1):.0f}% (includes load and write)")
    if a.big:
        big = make_inputs(a.work, a.big)
        r = measure("featgraph", big, [0])
        rows.append((f"1 head n={a.big}", "featgraph", r["wall"], r["peak_mib"]))
        m = measure("matmul", big, [0])
        rows.append((f"1 head n={a.big}", "matmul", m["wall"], m["peak_mib"]))
        print(f"\nn={a.big}: (a) would need {a.big**2 * 4 / 2**30:.1f} GiB per matrix; featgraph peak {r['peak_mib']:.0f} MiB")
    print(f"\n{'case':<20}{'variant':<12}{'wall s':>10}{'peak MiB':>12}")
    for case, v, wall, peak in rows:
        print(f"{case:<20}{v:<12}{wall:>10.2f}{peak:>12.0f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, arg, heads, res = sys.argv[2:6]
        child(name, {k: Path(v) for k, v in json.loads(arg).items()}, [int(h) for h in heads.split(",")], Path(res))
    else:
        main()

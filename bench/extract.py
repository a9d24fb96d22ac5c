"""Benchmark `featgraph extract` at a real model's sizes (Gemma 2 2B's layer 13 by default; `--family gpt2`: GPT-2
small's layer 8, 12 heads of 64, d_model 768, 24k SAEs) against the post's method.

Builds synthetic inputs in the real formats (a safetensors shard with its index and config.json — GPT-2's fused
Conv1D c_attn under openai-community/gpt2's names — and Gemma Scope params.npz files) and, in one run,
measures each variant in a fresh subprocess (so peak RSS is its own):

  (a) the post's method: full per-head float32 matrices (numpy), then a full
      argsort of |S| for the top K;
  (a') a stronger naive baseline: full matrices, then torch.topk;
  (a'') the best public alternative at sizes where S does not fit: S in row chunks,
      torch.topk per chunk, the chunks' winners merged (bounded memory, fp32);
  (b) `featgraph extract` end to end (load + factors + blocked selection + write);
  (c) the blocked matrix products alone (same blocks, no selection).

Then the selection alone ("compute"), on every device present (CPU always; CUDA when a
GPU is visible), on head-sized factors [n, d_head] for each width in --compute-n: featgraph's
selection (precision auto: bf16 proposals on a GPU, fp32 on a CPU; exact re-scoring) against
(a'') on the same device, with the same-edges check and peak memory (GPU: torch's peak
allocation; CPU: the subprocess's peak RSS). Widths that cannot fit are skipped with a reason.

`--family llama`: Llama-3.1-8B's layer 15 (32 heads over 8 kv heads of 128, d_model 4096, llama3 RoPE in
config.json, Llama Scope's 32k width); at 32k the post's method needs 4 GiB for |S| and 8 GiB of argsort indices
per matrix, so leave it out with --variants.

Usage: python bench/extract.py [--family gemma2|gpt2|llama] [--n 16384] [--big 65536] [--heads-all] [--compute-n 16384,65536]
                               [--gpu-n 16384,65536,262144,1048576] [--work DIR]
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

# Per family: d_model, n_heads, n_kv_heads, d_head, the layer benchmarked, the default SAE width.
SHAPES = {"gemma2": (2304, 8, 4, 256, 13, 16384), "gpt2": (768, 12, 12, 64, 8, 24576), "llama": (4096, 32, 8, 128, 15, 32768)}
# config.json's attention fields beside the sizes (meta-llama/Llama-3.1-8B's for llama: layer 15, Llama Scope's 32k).
CONFIGS = {
    "gemma2": {"model_type": "gemma2", "num_hidden_layers": 26, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6,
               "rope_theta": 10000.0, "attn_logit_softcapping": 50.0},
    "llama": {"model_type": "llama", "num_hidden_layers": 32, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
              "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192, "rope_type": "llama3"}},
}
FAMILY = os.environ.get("FEATGRAPH_BENCH_FAMILY", "gemma2")  # children inherit the family from the environment
D_MODEL, N_HEADS, N_KV, D_HEAD, LAYER, _ = SHAPES[FAMILY]
K = 1000


def make_inputs(root: Path, n: int) -> dict:
    """Layer-13 tensors + config + two SAEs of width n, once per (root, n)."""
    from safetensors.numpy import save_file

    root = root / FAMILY if FAMILY != "gemma2" else root
    root.mkdir(parents=True, exist_ok=True)
    model = root / "model"
    if FAMILY == "gpt2" and not (model / "config.json").exists():
        rng = np.random.default_rng(0)
        model.mkdir(exist_ok=True)
        p = f"h.{LAYER}"  # openai-community/gpt2's model.safetensors has no `transformer.` prefix
        t = {f"{p}.attn.c_attn.weight": rng.normal(0, 0.02, (D_MODEL, 3 * D_MODEL)),
             f"{p}.attn.c_attn.bias": rng.normal(0, 0.02, 3 * D_MODEL),
             f"{p}.attn.c_proj.weight": rng.normal(0, 0.02, (D_MODEL, D_MODEL)), f"{p}.attn.c_proj.bias": np.zeros(D_MODEL),
             f"{p}.ln_1.weight": rng.normal(1, 0.2, D_MODEL), f"{p}.ln_1.bias": rng.normal(0, 0.05, D_MODEL)}
        t = {k: v.astype(np.float32) for k, v in t.items()}
        save_file(t, str(model / "model.safetensors"))
        (model / "config.json").write_text(json.dumps({
            "model_type": "gpt2", "n_embd": D_MODEL, "n_head": N_HEADS, "n_layer": 12, "n_positions": 1024,
            "layer_norm_epsilon": 1e-5}))
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
            "hidden_size": D_MODEL, "num_attention_heads": N_HEADS, "num_key_value_heads": N_KV, "head_dim": D_HEAD}
            | CONFIGS[FAMILY]))
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

    from featgraph.core.circuits import circuit_factors
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


def chunked_topk(src, dst, k: int, block_bytes: int = 256 << 20):
    """(a''): S = src @ dst.T in row chunks, torch.topk of |S| per chunk, winners merged. Returns (rows, cols)."""
    import torch

    rows = max(1, block_bytes // (dst.shape[0] * 4 * 3))
    vals, idx = [], []
    for r0 in range(0, src.shape[0], rows):
        blk = (src[r0 : r0 + rows] @ dst.T).abs_().flatten()
        v, i = torch.topk(blk, min(k, blk.numel()))
        vals.append(v)
        idx.append(i + r0 * dst.shape[0])
    v, i = torch.cat(vals), torch.cat(idx)
    top = i[torch.topk(v, min(k, v.numel())).indices]
    return (top // dst.shape[0]).cpu().numpy(), (top % dst.shape[0]).cpu().numpy()


def variant_chunked(inp, heads):
    return [chunked_topk(f.src, f.dst, K) for f in _factors(inp, heads)]


def variant_featgraph(inp, heads):
    import featgraph as fg

    out = Path(tempfile.mkdtemp()) / "run"
    fg.extract(model=str(inp["model"]), layer=LAYER, sae_in=str(inp["sae_in"]), sae_out=str(inp["sae_out"]),
               heads=heads, top_k=K, device="cpu", sae_in_id="12-bench-in", sae_out_id="13-bench-out",
               out=out, labels=False, ov_target="resid")
    import pandas as pd

    e = pd.read_parquet(out / "edges.parquet")
    return [(g["src_index"].to_numpy(), g["dst_index"].to_numpy()) for _, g in e.groupby(["head", "circuit"], sort=False)]


def variant_matmul(inp, heads):
    """The blocked products alone: the floor for any exact method."""

    from featgraph.core.select import Selection

    sel = Selection()
    for f in _factors(inp, heads):
        rows = max(1, sel.block_bytes // (f.dst.shape[0] * 12))
        for r0 in range(0, f.src.shape[0], rows):
            blk = f.src[r0 : r0 + rows] @ f.dst.T
            del blk
    return []


VARIANTS = {"post": variant_post, "topk": variant_topk, "chunked": variant_chunked, "featgraph": variant_featgraph,
            "matmul": variant_matmul}


# ------------------------------------------------------------ the selection alone, per device

def compute_case(device: str, n: int, n_dst: int, heads: int, result: Path) -> None:
    """Time featgraph's selection and (a'') on random head factors [n, d_head] x [n_dst, d_head] on `device` (a subprocess)."""
    import torch

    from featgraph.core.select import Selection, select

    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    out = {"featgraph": 0.0, "chunked": 0.0, "same": True, "differ": 0}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(heads):
        src = (torch.randn(n, D_HEAD, generator=g) / D_HEAD**0.5).to(dev)
        dst = (torch.randn(n_dst, D_HEAD, generator=g) / D_HEAD**0.5).to(dev)
        sync()
        t = time.perf_counter()
        got = select(src, dst, Selection(top_k=K, precision="auto", block_bytes=None))
        sync()
        out["featgraph"] += time.perf_counter() - t
        t = time.perf_counter()
        r, c = chunked_topk(src, dst, K, block_bytes=Selection(block_bytes=None).resolve(dev).block_bytes or 256 << 20)
        sync()
        out["chunked"] += time.perf_counter() - t
        a, b = set(zip(got.src_idx.tolist(), got.dst_idx.tolist())), set(zip(r.tolist(), c.tolist()))
        out["same"] &= a == b
        out["differ"] += len(a ^ b) // 2
        del src, dst
    out["peak_mib"] = (torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda"
                       else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["device_name"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    result.write_text(json.dumps(out))


def measure_compute(device: str, n: int, n_dst: int, heads: int) -> dict:
    with tempfile.TemporaryDirectory() as td:
        res = Path(td) / "r.json"
        subprocess.run([sys.executable, __file__, "--compute-child", device, str(n), str(n_dst), str(heads), str(res)], check=True)
        return json.loads(res.read_text())


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
    ap.add_argument("--family", choices=sorted(SHAPES), default="gemma2", help="whose layer sizes (default gemma2)")
    ap.add_argument("--n", type=int, default=0, help="SAE width (default: the family's: 16384 Gemma Scope, 24576 GPT-2 res-jb)")
    ap.add_argument("--big", type=int, default=65536, help="width for the large run (0 to skip)")
    ap.add_argument("--variants", default="post,topk,chunked,featgraph,matmul",
                    help="which of post, topk, chunked, featgraph, matmul to time (the full-matrix ones take minutes at 24k)")
    ap.add_argument("--heads-all", action="store_true", help="also time all heads of the layer for (a), (b), (c)")
    ap.add_argument("--compute-n", default="16384", help="widths for the CPU selection-alone section")
    ap.add_argument("--gpu-n", default="16384,65536,262144,1048576", help="widths for the GPU selection-alone section")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "featgraph-bench")
    a = ap.parse_args()
    global FAMILY, D_MODEL, N_HEADS, N_KV, D_HEAD, LAYER
    FAMILY = os.environ["FEATGRAPH_BENCH_FAMILY"] = a.family
    D_MODEL, N_HEADS, N_KV, D_HEAD, LAYER, width = SHAPES[FAMILY]
    a.n = a.n or width

    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}; {FAMILY}: d_model "
          f"{D_MODEL}, {N_HEADS} heads ({N_KV} kv) of {D_HEAD}, layer {LAYER}, SAE width {a.n}")
    inp = make_inputs(a.work, a.n)
    rows = []
    for label, heads in [("1 head", [0])] + ([(f"{N_HEADS} heads", list(range(N_HEADS)))] if a.heads_all else []):
        variants = [v for v in ("post", "topk", "chunked", "featgraph", "matmul") if v in a.variants.split(",")]
        r = {v: measure(v, inp, heads) for v in variants}
        for v in variants:
            rows.append((f"{label} n={a.n}", v, r[v]["wall"], r[v]["peak_mib"]))
        print(f"\n{label}, n={a.n}, QK+OV, K={K}:")
        if "post" in r and "featgraph" in r:
            print(f"  same edges as the post's method: {r['post']['edges'] == r['featgraph']['edges']}")
            print(f"  (b) featgraph vs (a) post:        {r['post']['wall'] / r['featgraph']['wall']:.1f}x faster")
        if "topk" in r and "featgraph" in r:
            print(f"  (b) featgraph vs (a') full+topk:   {r['topk']['wall'] / r['featgraph']['wall']:.2f}x faster")
        if "chunked" in r and "featgraph" in r:
            print(f"  (b) featgraph vs (a'') chunked topk: {r['chunked']['wall'] / r['featgraph']['wall']:.2f}x faster "
                  f"(same edges: {r['chunked']['edges'] == r['featgraph']['edges']})")
        if "matmul" in r and "featgraph" in r:
            print(f"  (b) featgraph over (c) matmuls:    +{100 * (r['featgraph']['wall'] / r['matmul']['wall'] - 1):.0f}% "
                  "(includes load and write)")
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

    devices = [("cpu", [int(x) for x in a.compute_n.split(",") if x])]
    if torch.cuda.is_available():
        devices.append(("cuda", [int(x) for x in a.gpu_n.split(",") if x]))
    else:
        print("\nno CUDA GPU visible: GPU figures not measured")
    print(f"\nselection alone, {N_HEADS} heads x QK+OV = {2 * N_HEADS} matrices per width, K={K}, random factors [n, {D_HEAD}]")
    print(f"{'device':<28}{'n_src x n_dst':>20}{'featgraph s':>13}{'chunked s':>11}{'ratio':>7}{'same':>6}{'peak MiB':>10}")
    for device, widths in devices:
        for n in widths:
            # up to 65k: a whole layer (8 heads x QK+OV); 262k: one head's QK+OV against a 65k destination SAE;
            # 1M: one 1M x 1M matrix
            n_dst, matrices = (n, 2 * N_HEADS) if n <= 65536 else ((65536, 2) if n < 1 << 20 else (n, 1))
            try:
                r = measure_compute(device, n, n_dst, matrices)
            except subprocess.CalledProcessError as e:
                print(f"{device:<28}{f'{n} x {n_dst}':>20}  failed (exit {e.returncode}, e.g. out of memory): skipped")
                continue
            name = r["device_name"] if device == "cuda" else "cpu"
            print(f"{name[:27]:<28}{f'{n:,} x {n_dst:,}':>20}{r['featgraph']:>13.2f}{r['chunked']:>11.2f}"
                  f"{r['chunked'] / r['featgraph']:>7.1f}{r['same']!s:>6}{r['peak_mib']:>10.0f}"
                  + f"   ({matrices} matrices)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--compute-child":
        dev, n, n_dst, heads, res = sys.argv[2:7]
        compute_case(dev, int(n), int(n_dst), int(heads), Path(res))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, arg, heads, res = sys.argv[2:6]
        child(name, {k: Path(v) for k, v in json.loads(arg).items()}, [int(h) for h in heads.split(",")], Path(res))
    else:
        main()

"""Benchmark the CPU tile shape of `select`: one head's QK matrix at Gemma 2 2B's sizes (16,384 × 16,384 features,
d_head 256), top 1,000, walked in whole-row blocks (the layout before tiles: 256 MiB budget, 1,365 rows × 16,384) and
in square tiles of several sizes (select.CPU_TILE_BYTES).

For each shape, in process CPU seconds (both threads) and wall seconds, median of --reps runs taken in turns:
  products   the block products alone in that shape (select.block_products: select's blocks, nothing selected)
  select     featgraph's select() in that shape (products, screening, exact re-scoring, ordering)
and select's ratio to the whole-row products (the fixed baseline) and to its own products. Every shape must give the
same edges (checked). Peak RSS is the process' (one process runs all shapes; the tile buffer is each shape's own).

Usage: python bench/select_tiles.py [--n 16384] [--reps 3] [--tiles 4,8,16,32] [--threads 1]   # tile sizes in MiB
(--threads 1: CPU time is then wall time, without the threads' waiting for each other: steadier figures)
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch


def factors(n: int, d_model: int = 2304, d_head: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and queries of one head as the atlas bench makes them: unit-ish SAE rows through a random projection."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        W = torch.randn(n, d_model, generator=g)
        W *= torch.empty(n, 1).uniform_(0.5, 1.5, generator=g) / W.norm(dim=1, keepdim=True)
        out.append(W @ (torch.randn(d_head, d_model, generator=g) * 0.02).T)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tiles", default="4,8,16,32", help="tile sizes to try, MiB")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, this machine's cores)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from featgraph.core import select as S

    src, dst = factors(a.n)
    sel = S.Selection(top_k=1000).resolve(torch.device("cpu"))
    assert sel.block_bytes is not None
    shapes = {"whole rows": 1 << 62} | {f"tiles {t} MiB": int(t) << 20 for t in a.tiles.split(",")}
    default = S.CPU_TILE_BYTES

    def products(tile: int) -> None:
        S.CPU_TILE_BYTES = tile
        S.block_products(src, dst, sel)

    edges = {}

    def selected(tile: int, name: str) -> None:
        S.CPU_TILE_BYTES = tile
        edges[name] = S.select(src, dst, sel)

    times: dict[tuple[str, str], list[tuple[float, float]]] = {(k, w): [] for k in shapes for w in ("products", "select")}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {a.n:,} x {a.n:,}, d_head 256, top 1000; "
          f"default tile {default >> 20} MiB")
    for _ in range(a.reps):
        for name, tile in shapes.items():
            for what, fn in (("products", lambda: products(tile)), ("select", lambda: selected(tile, name))):
                w, c = time.perf_counter(), time.process_time()
                fn()
                times[(name, what)].append((time.process_time() - c, time.perf_counter() - w))
    S.CPU_TILE_BYTES = default
    first = next(iter(edges.values()))
    for name, e in edges.items():
        same = all(np.array_equal(getattr(e, f), getattr(first, f)) for f in ("src_idx", "dst_idx", "weight"))
        if not same:
            raise SystemExit(f"{name}: edges differ from whole rows'")

    def med(name: str, what: str) -> tuple[float, float]:
        v = times[(name, what)]
        return statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)

    base_cpu, base_wall = med("whole rows", "products")
    print(f"{'shape':<16} {'rows x cols':>14} {'products CPU/wall s':>22} {'select CPU/wall s':>20} "
          f"{'select / whole-row products':>28} {'select / own products':>22}")
    for name, tile in shapes.items():
        S.CPU_TILE_BYTES = tile
        rows, cols = S.block_shape(dst.shape[0], sel.block_bytes, cuda=False)
        (pc, pw), (sc, sw) = med(name, "products"), med(name, "select")
        print(f"{name:<16} {f'{rows} x {cols}':>14} {pc:>10.2f} / {pw:<9.2f} {sc:>8.2f} / {sw:<9.2f} "
              f"{sc / base_cpu:>12.3f} CPU {sw / base_wall:.3f} wall {sc / pc:>8.3f} CPU {sw / pw:.3f} wall")
    S.CPU_TILE_BYTES = default
    print(f"same edges in every shape; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}")


if __name__ == "__main__":
    main()

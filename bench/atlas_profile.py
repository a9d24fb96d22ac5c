"""Where one atlas layer's CPU time goes: cProfile, timed in process CPU seconds (both threads; robust to other
jobs' load, unlike wall time), of `fg.atlas` on one layer of bench/atlas.py's synthetic Gemma 2 2B inputs at 16k.

The library is imported before the clock starts. Prints the CPU seconds of the block products (torch.matmul), the
factor products (circuit_factors), the moments' means and Gram matrices and the row norms, the selection beyond its block products, and
the rest (loading, checks, hashing, writing), then the functions taking the most CPU time.

Usage: python bench/atlas_profile.py [--heads 0-1] [--work DIR]   # the inputs are bench/atlas.py's (made if absent)
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default="0-1")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "featgraph-bench-atlas")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    import atlas as bench  # bench/atlas.py: the same inputs

    import featgraph as fg
    import featgraph.api.compute
    import featgraph.api.multilayer
    import featgraph.api.run

    heads = bench.parse_range(a.heads)
    model, template = bench.make_model(a.work), bench.make_saes(a.work, 16384)
    out = a.work / "atlas-profile"
    shutil.rmtree(out, ignore_errors=True)
    prof = cProfile.Profile(time.process_time)
    w, c = time.perf_counter(), time.process_time()
    prof.enable()
    fg.atlas(model=str(model), layers=[1], out=out, heads=heads, top_k=bench.K, device="cpu", labels=False,
             sae_template=lambda L: template.format(layer=L, l0=bench.L0[L]))
    prof.disable()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]

    def cum(file_part: str, name: str) -> float:
        return sum(v[3] for (f, _, n), v in raw.items() if file_part in f and n == name)

    blocks = sum(v[2] for (_, _, n), v in raw.items() if n == "<built-in method torch.matmul>")
    factors = cum("core/circuits.py", "circuit_factors")
    stats_t = cum("core/circuits.py", "mean_and_gram") + cum("core/select.py", "row_norms")
    select_t = cum("core/select.py", "select")
    print(f"one layer, heads {a.heads}, QK+OV at 16k: wall {wall:.1f} s, CPU {cpu:.1f} s "
          f"(load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())})")
    for what, t in (("block products (torch.matmul)", blocks), ("factor products (circuit_factors)", factors),
                    ("moments (means, Gram matrices) and row norms", stats_t), ("selection beyond its block products", select_t - blocks),
                    ("the rest: loading, checks, hashing, writing", cpu - select_t - factors - stats_t)):
        print(f"  {what:<46} {t:6.2f} s CPU  {100 * t / cpu:5.1f}%  {t / blocks:5.3f}x the block products")
    stats.sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()

"""Benchmark `featgraph import GRAPH.json` on a large synthetic attribution graph (issue 19), and the embedded load.

A graph in the real schema, laid out as circuit-tracer 0.5.0 writes it (indent 2: about 110 bytes a link), of
--gb gigabytes (or --links links): --features feature nodes at random (layer, index, position) over 26 layers
and --positions tokens, one embedding per position, links between random nodes. It is written as a stream
(tests/attribution_files.py's write_large). Then, each in a fresh subprocess so its peak RSS is its own:

- `featgraph import FILE --out RUN` (the streamed reader: wall time, peak RSS, MB/s of the file);
- with --load, `featgraph load RUN` (the embedded store: the links copied from Parquet by the engine);
- with --export, the streaming pass of `featgraph qk-trace` (featgraph.load.attribution.read_parts and
  write_graph: every part but the links read whole, the links streamed through into a new file), without the
  model (the QK attribution itself is one prompt's forward pass).

Measured 2026-12-03 on the project's 2-core, 24 GB machine shared with other jobs (so wall times run long; CPU
seconds beside them), `--gb 2.15 --work W --keep` then `--work W --reuse --export --no-import`: a 2.154 GB file
(19,907,407 links, 10,037 nodes) written in 73 s; import 95.5 s wall, 50.1 s CPU, peak RSS 431 MiB; qk-trace's
pass 873 s wall, 143 s CPU, peak RSS 147 MiB (1.496 GB written); `featgraph load` of that run (embedded) 641 s,
peak RSS 7.35 GiB — the engine's, not featgraph's: see docs/graph.md, "Size".

Counts are checked against what was written. Wall times on a shared machine depend on its load: CPU seconds are printed beside them. Usage:
    python bench/attribution.py [--gb 2] [--links N] [--features 10000] [--gz] [--load] [--export] [--work DIR [--reuse]] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

BYTES_PER_LINK = 108  # write_large's layout (indent 2), 10,000 feature nodes: 2.154 GB held 19,907,407 links


def _timed(code: str) -> dict:
    """Run Python `code` in a fresh interpreter; its wall time and peak RSS (MiB)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return out | {"wall_s": wall}


_PEAK = ("import resource, json; u = resource.getrusage(resource.RUSAGE_SELF); peak = u.ru_maxrss / 1024; "
         "cpu = u.ru_utime + u.ru_stime")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0, help="file size in GB (10^9 bytes) [2]")
    ap.add_argument("--links", type=int, default=None, help="links (overrides --gb)")
    ap.add_argument("--features", type=int, default=10_000, help="feature nodes [10000]")
    ap.add_argument("--positions", type=int, default=40, help="prompt tokens [40]")
    ap.add_argument("--gz", action="store_true", help="write the file gzipped")
    ap.add_argument("--load", action="store_true", help="also time `featgraph load` (embedded store)")
    ap.add_argument("--export", action="store_true", help="also time qk-trace's streaming pass over the file")
    ap.add_argument("--no-import", action="store_true", help="skip the import (with --reuse and --export)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the file and the run [a temporary one]")
    ap.add_argument("--keep", action="store_true", help="keep the file and the run")
    ap.add_argument("--reuse", action="store_true", help="reuse the graph file already in --work (written by an earlier run)")
    a = ap.parse_args()

    from attribution_files import write_large

    work = Path(a.work or tempfile.mkdtemp(prefix="featgraph-bench-attribution-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    n_links = a.links or int(a.gb * 1e9 / BYTES_PER_LINK)
    path = work / ("graph.json.gz" if a.gz else "graph.json")
    try:
        t0 = time.perf_counter()
        if a.reuse and path.is_file():
            counts = json.loads((work / "counts.json").read_text())
        else:
            counts = write_large(path, n_links, n_pos=a.positions, n_features=a.features, gz=a.gz)
            (work / "counts.json").write_text(json.dumps(counts))
        size = path.stat().st_size
        print(f"wrote {path.name}: {size / 1e9:.3f} GB, {counts['nodes']:,} nodes, {counts['links']:,} links "
              f"in {time.perf_counter() - t0:.0f} s")
        run = work / "run"
        if a.export:
            out = work / ("enriched.json.gz" if a.gz else "enriched.json")
            r = _timed(f"from featgraph.load.attribution import read_parts, write_graph\n"
                       f"parts, _ = read_parts({str(path)!r})\n"
                       f"n = write_graph({str(path)!r}, {str(out)!r}, parts, {{x['node_id'] for x in parts['nodes']}})\n"
                       f"{_PEAK}\nprint(json.dumps({{'links': n, 'peak_mib': peak, 'cpu_s': cpu}}))")
            assert r["links"] == counts["links"], (r, counts)
            print(f"qk-trace's pass (read_parts + write_graph): {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                  f"peak RSS {r['peak_mib']:.0f} MiB, {r['links']:,} links written ({out.stat().st_size / 1e9:.3f} GB)")
            out.unlink()
        if a.no_import:
            return
        shutil.rmtree(run, ignore_errors=True)
        r = _timed(f"from featgraph.api.attribution import import_graph\n"
                   f"g = import_graph({str(path)!r}, {str(run)!r})\n"
                   f"{_PEAK}\nprint(json.dumps({{'nodes': g.nodes, 'links': g.links, 'peak_mib': peak, 'cpu_s': cpu}}))")
        assert (r["nodes"], r["links"]) == (counts["nodes"], counts["links"]), (r, counts)
        print(f"import: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU ({size / 1e6 / r['cpu_s']:.1f} MB of the file per CPU second), "
              f"peak RSS {r['peak_mib']:.0f} MiB, "
              f"{r['nodes']:,} nodes and {r['links']:,} links as written")
        if a.load:
            r = _timed(f"from featgraph.api.run import open_run\n"
                       f"c = open_run({str(run)!r}).load()\n"
                       f"{_PEAK}\nprint(json.dumps(c | {{'peak_mib': peak, 'cpu_s': cpu}}))")
            assert r["links"] == counts["links"], r
            print(f"load (embedded): {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS {r['peak_mib']:.0f} MiB, {r['prompt_nodes']:,} prompt nodes, "
                  f"{r['links']:,} links")
        print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        if not a.keep and a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""How long the pages take to open in a real browser: the report and a graph page, on the demo run and on a
16k-feature synthetic run (8 heads × QK/OV × 1,000 edges, Neuronpedia-like labels), in Debian's headless
Chromium driven by Playwright. Prints, per page, the browser's own load time (navigation start → load event,
and → the graph drawn), the page's size, and a search's response time; the baseline is the demo's page.

Usage: python bench/pages.py [--n 16384] [--edges 1000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

WORDS = ("numerical patterns lists sequences legal court cases programming syntax code military threats scientific "
         "terminology past tense actions financial transactions deposits punctuation periods names people markup "
         "constants equity fairness sounds noises faces instructions tasks structured data formats conjunctions "
         "locations events frequencies counts authority compliance references mathematical expressions").split()


def synthetic_run(root: Path, n: int, k: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for head in range(8):
        for circ, dst_sae in (("QK", "12-gemmascope-res-16k"), ("OV", "13-gemmascope-res-16k")):
            # a few hub features (heavy-tailed degrees, as real heads have) among many features seen once
            hub = rng.random(3 * k) < 0.3
            src = np.where(hub, rng.zipf(1.3, 3 * k) % n, rng.integers(0, n, 3 * k))
            dst = np.where(rng.random(3 * k) < 0.3, rng.zipf(1.3, 3 * k) % n, rng.integers(0, n, 3 * k))
            pairs = pd.DataFrame({"s": src, "d": dst}).drop_duplicates().head(k)
            w = rng.normal(size=len(pairs)) * 0.1
            rows.append(pd.DataFrame({"layer": 13, "head": head, "circuit": circ,
                                      "src": [f"gemma-2-2b/12-gemmascope-res-16k/{i}" for i in pairs["s"]],
                                      "dst": [f"gemma-2-2b/{dst_sae}/{i}" for i in pairs["d"]], "weight": w}))
    edges = root / "edges.parquet"
    pd.concat(rows, ignore_index=True).to_parquet(edges)
    labels = root / "labels.jsonl"
    with open(labels, "w") as fh:
        for sae in ("12-gemmascope-res-16k", "13-gemmascope-res-16k"):
            for i in range(n):
                text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 16))))
                fh.write(json.dumps({"modelId": "gemma-2-2b", "layer": sae, "index": str(i), "description": text}) + "\n")
    import featgraph as fg

    run = fg.import_edges(edges, root / "run")
    run.label([labels])
    return root / "run"


def measure(page_path: Path, graph: bool) -> dict:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import browser

    with browser() as b:
        t0 = time.perf_counter()
        b.page.goto(page_path.as_uri(), wait_until="load", timeout=120_000)
        if graph:
            b.page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        wall = time.perf_counter() - t0
        load = b.page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        t1 = time.perf_counter()
        b.page.fill("#search", "court")
        b.page.wait_for_function("document.body.hasAttribute('data-matches')", timeout=60_000)
        search = time.perf_counter() - t1
        assert not b.console, b.console
    return {"load_ms": load, "ready_s": wall, "search_s": search, "mib": page_path.stat().st_size / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--edges", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "featgraph-bench-pages")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    import featgraph as fg
    from featgraph.api.demo import run_demo

    run_demo(a.work / "demo")
    demo = fg.open_run(a.work / "demo" / "run")
    t = time.perf_counter()
    big_dir = synthetic_run(a.work, a.n, a.edges)
    made = time.perf_counter() - t
    big = fg.open_run(big_dir)
    rows = []
    for name, run in (("demo", demo), (f"{a.n // 1024}k synthetic", big)):
        t = time.perf_counter()
        index = run.report(a.work / f"report-{name.split()[0]}", plots=False)
        built = time.perf_counter() - t
        rows.append((f"{name}: report ({len(run.edge_table):,} edges, {len(run.features):,} features)", built, measure(index, False)))
        t = time.perf_counter()
        page = run.viz(0, "ov", a.work / f"viz-{name.split()[0]}.html", top=500)
        built = time.perf_counter() - t
        rows.append((f"{name}: graph page, head 0 OV, 500 edges", built, measure(page, True)))
    print(f"synthetic run made in {made:.1f} s")
    print(f"\n{'page':<62}{'build s':>9}{'MiB':>7}{'load ms':>9}{'ready s':>9}{'search s':>10}")
    for name, built, m in rows:
        print(f"{name:<62}{built:>9.2f}{m['mib']:>7.1f}{m['load_ms']:>9.0f}{m['ready_s']:>9.2f}{m['search_s']:>10.2f}")
    base = rows[0][2]["ready_s"]
    print(f"\n16k report opens in {rows[2][2]['ready_s']:.2f} s of browser time ({rows[2][2]['ready_s'] / base:.1f}x the demo's)")


if __name__ == "__main__":
    main()

"""Benchmark `featgraph serve` (issue 18) in a real Chromium: server start, first paint, and the latency of a search,
an expand and a path (or head) query from the click to the drawn result, plus the server's peak memory.

Two synthetic runs at Gemma 2 2B's sizes (bench/load.py's generators: 16,384 features per SAE, 8 heads, heavy-tailed
degrees), with labels drawn from a 400-word vocabulary so label search has work to do:
- an atlas of 26 layers (--atlas-edges, 400,000 by default: the 16k atlas' size);
- one layer of --edges (10⁶ by default); a one-layer run has no cross-layer path, so it times a head's
  two-column view (the library's top_edges) instead.
Each is loaded into its embedded store, served by `featgraph serve` in its own process (its peak RSS is
/proc's VmHWM), and driven by Playwright on Debian's chromium. Latencies are measured in the page: from the
click (or the Enter of a search) to the moment the page marks the result drawn (after sigma's render), over
--repeat different features/words; p50 and p95 are printed. With --neo4j the same on a Neo4j 5.26 started from
scripts/neo4j-server's jars (not run by default).

Usage: python bench/serve.py [--edges 1000000] [--atlas-edges 400000] [--repeat 20] [--work DIR] [--neo4j]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

WORDS = 400


def labels(ids: list[str]) -> list[str]:
    """A label of 3-5 words from a fixed vocabulary of WORDS words for each feature (seeded)."""
    rng = np.random.default_rng(7)
    vocab = [f"{a}{b}" for a in ("alpha", "beta", "gamma", "delta", "sigma", "omega", "kappa", "theta", "zeta", "lambda")
             for b in ("numbers", "names", "legal", "code", "dates", "places", "music", "sports", "science", "food",
                       "colors", "verbs", "money", "health", "travel", "weather", "law", "math", "animals", "games",
                       "tools", "emotions", "cities", "history", "quotes", "lists", "tables", "units", "years", "syntax",
                       "brackets", "plurals", "negation", "questions", "commas", "periods", "capitals", "rhymes",
                       "spelling", "markup")][:WORDS]
    return [" ".join(rng.choice(vocab, size=rng.integers(3, 6))) for _ in ids]


def make_runs(work: Path, edges: int, atlas_edges: int) -> dict[str, Path]:
    """bench/load.py's synthetic runs, written with labelled features and loaded into their embedded stores."""
    import load

    import featgraph as fg
    from featgraph.core.schema import features_from_edges
    from featgraph.runs.manifest import Manifest
    from featgraph.runs.rundir import write_run

    def labelled_write(root: Path, name: str, frames: list[pd.DataFrame]) -> Path:
        e = pd.concat(frames, ignore_index=True)
        f = features_from_edges(e)
        f["description"] = labels(list(f["id"]))
        return write_run(root / name, e, f, Manifest(command="bench"))

    load._write = labelled_write  # the generators write through it
    out = {}
    for name, make in (("atlas", lambda: load.synthetic_atlas(work, atlas_edges)),
                       ("one-layer", lambda: load.synthetic_run(work, edges))):
        path = work / name
        if not (path / "graph.lbdb").exists():
            t = time.perf_counter()
            make()
            run = fg.open_run(path)
            run.load()
            print(f"{name}: made and loaded {len(run.edge_table):,} edges, {len(run.features):,} features in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        out[name] = path
    return out


def start_server(run: Path, port: int, neo4j: bool) -> tuple[subprocess.Popen, float, str]:
    t = time.perf_counter()
    args = [sys.executable, "-m", "featgraph", "serve", str(run), "--port", str(port)] + (["--neo4j"] if neo4j else [])
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    if "http://" not in line:
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
    url = line[line.index("http://"):].split()[0]
    urllib.request.urlopen(url + "api/info", timeout=120).read()
    return proc, time.perf_counter() - t, url


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


TIMER = """() => {
  window.__t = {};
  const mark = () => { window.__t.start = performance.now(); };
  document.addEventListener('click', mark, true);
  document.addEventListener('keydown', (e) => { if (e.key === 'Enter') mark(); }, true);
  new MutationObserver(ms => ms.forEach(m => { window.__t[m.attributeName] = performance.now(); }))
    .observe(document.body, {attributes: true});
}"""


def timed(page, act, attr: str, timeout: float = 60.0) -> float:
    """ms from the click/Enter that `act` does to the page setting `attr` (after the result is drawn)."""
    before = page.evaluate(f"document.body.getAttribute('{attr}')")
    page.evaluate("window.__t = {}")
    act()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if page.evaluate(f"document.body.getAttribute('{attr}')") != before and page.evaluate(f"window.__t['{attr}'] !== undefined"):
            return page.evaluate(f"window.__t['{attr}'] - window.__t.start")
        if page.evaluate("document.getElementById('status').className") == "error":
            raise SystemExit("the page reported: " + page.inner_text("#status"))
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {attr}")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def drive(name: str, url: str, run: Path, repeat: int) -> dict:
    import featgraph as fg

    from helpers import browser

    r = fg.open_run(run, verify=False)
    atlas = len(r.layers) > 1
    words = sorted({w for d in r.features["description"].head(2000) for w in str(d).split()})
    rng = np.random.default_rng(3)
    res: dict[str, list[float]] = {"search": [], "expand": [], "path" if atlas else "head": []}
    with browser(allow=url) as b:
        p = b.page
        t = time.perf_counter()
        p.goto(url)
        p.wait_for_selector("body[data-ready='1']", timeout=120000)
        first = (time.perf_counter() - t) * 1000
        p.evaluate(TIMER)
        for i in range(repeat):
            word = str(rng.choice(words))
            p.fill("#q", word)
            res["search"].append(timed(p, lambda: p.press("#q", "Enter"), "data-searches"))
            p.click("#clear")
            rid = p.get_attribute("#results .result", "data-id")
            res["expand"].append(timed(p, lambda rid=rid: p.click(f".result[data-id='{rid}'] button.expand"), "data-drawn"))
            if atlas:
                p.select_option("#h-layer", str(r.layers[i % (len(r.layers) - 1)]))
                res["path"].append(timed(p, lambda: p.click("#paths"), "data-drawn"))
            else:
                p.select_option("#h-head", str(i % 8))
                res["head"].append(timed(p, lambda: p.click("#head"), "data-drawn"))
        # the canvas at 5,000 edges: a head's 5,000 strongest edges in two columns, then a redraw in rows and a
        # camera frame (zoom)
        p.click("#clear")
        p.select_option("#h-layer", str(r.layers[len(r.layers) // 2]))
        p.select_option("#h-head", "0")
        p.fill("#h-top", "5000")
        big = timed(p, lambda: p.click("#head"), "data-drawn")
        n = p.evaluate("featgraph.state.edges.size")
        redraw = timed(p, lambda: p.evaluate("() => { window.__t.start = performance.now(); featgraph.setLayout('layers'); }"), "data-drawn")
        frame = p.evaluate("""() => new Promise(res => { const r = featgraph.renderer, t0 = performance.now();
            r.once('afterRender', () => res(performance.now() - t0)); r.getCamera().setState({ratio: 0.5}); })""")
        errors = [m for m in b.console if "GL Driver Message" not in m]
    out = {"first_paint_ms": first, "big_expand_ms": big, "big_edges": n, "redraw_ms": redraw, "camera_frame_ms": frame, "errors": errors}
    for k, xs in res.items():
        out[k] = (pct(xs, 50), pct(xs, 95))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--atlas-edges", type=int, default=400_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (made once, reused)")
    ap.add_argument("--neo4j", action="store_true", help="also serve from Neo4j (scripts/neo4j-server)")
    ap.add_argument("--only", choices=["atlas", "one-layer"], default=None)
    args = ap.parse_args()
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="featgraph-serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = make_runs(work, args.edges, args.atlas_edges)
    stores = [("embedded", False)] + ([("neo4j", True)] if args.neo4j else [])
    ctx = None
    if args.neo4j:
        from neo4j_server import neo4j_server

        os.environ.update(NEO4J_HEAP="2g", NEO4J_PAGECACHE="1g")  # docker-compose.yml's, as bench/load.py
        ctx = neo4j_server(work / "neo4j")
        server = ctx.__enter__()
        os.environ.update(NEO4J_URI=server["uri"], NEO4J_USERNAME=server["user"], NEO4J_PASSWORD=server["password"])
    try:
        for name, run in runs.items():
            if args.only and name != args.only:
                continue
            for store, neo4j in stores:
                if neo4j:
                    import featgraph as fg

                    t = time.perf_counter()
                    fg.open_run(run, verify=False).load(neo4j=True)
                    print(f"{name}: Neo4j load {time.perf_counter() - t:.0f} s", flush=True)
                proc, start_s, url = start_server(run, 0, neo4j)
                try:
                    m = drive(name, url, run, args.repeat)
                    rss = peak_rss_mib(proc.pid)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                print(f"\n{name} ({store}): server start {start_s:.2f} s, first paint {m['first_paint_ms']:.0f} ms, "
                      f"server peak RSS {rss:.0f} MiB")
                for k in ("search", "expand", "path", "head"):
                    if k in m:
                        print(f"  {k:7s} click -> drawn: p50 {m[k][0]:.0f} ms, p95 {m[k][1]:.0f} ms (n={args.repeat})")
                print(f"  {m['big_edges']:,} edges drawn: a head's top 5,000 {m['big_expand_ms']:.0f} ms, redraw in rows {m['redraw_ms']:.0f} ms, "
                      f"a camera frame {m['camera_frame_ms']:.0f} ms")
                if m["errors"]:
                    print("  page console:", m["errors"][:3])
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

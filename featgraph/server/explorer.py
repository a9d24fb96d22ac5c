"""What `featgraph serve` answers, without HTTP: one open store, each request a library query (or the console's
read-only Cypher through `Run.query`, so the same guard as `featgraph query`), answers bounded in size.

Every answer is a dict the server sends as JSON; bad requests raise BadInput/BadValue (sent as 400 with the
message). Shapes: a graph is {"features": {id: {...}}, "edges": [...]} (render.explorer.graph_payload).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

from featgraph.core.schema import FEATURE_INDEX
from featgraph.errors import BadInput, BadValue

MAX_EDGES = 5000  # edges the page draws at once (the canvas stays interactive at this size)
MAX_ROWS = 2000  # console rows sent to the page
MAX_SEARCH = 50  # search results
DEFAULT_TIMEOUT = 10.0  # seconds a query may run


class Explorer:
    """A run's store, open for the server's lifetime. Queries run one at a time (a lock): the embedded
    store's connection is not shared between threads, and on a 2-core machine parallel queries only queue."""

    def __init__(self, run, neo4j: bool = False, timeout: float = DEFAULT_TIMEOUT):
        from featgraph.graph import library

        if timeout <= 0:
            raise BadValue("timeout", timeout, "must be a positive number of seconds")
        import dataclasses

        from featgraph.core.schema import contiguous

        # the run's tables with each column in one chunk: every answer takes a few rows of them (see contiguous)
        run = dataclasses.replace(run, edge_table=contiguous(run.edge_table), features=contiguous(run.features))
        self.run, self.neo4j, self.timeout = run, neo4j, float(timeout)
        self.features = run.features.drop_duplicates("id").set_index("id")
        self.library = library.library()
        self._lock = threading.Lock()
        self._index = None
        self._groups: dict | None = None
        self._heads: dict[tuple[int, int, str], pd.DataFrame] = {}
        self._adj: Any = None  # analyse.adjacency.Adjacency, built by warm()
        self._lookup: Any = None  # render.explorer.FeatureLookup, built by warm()
        if neo4j:
            from featgraph.graph.neo4j_store import Neo4jSettings, Neo4jStore, redact

            settings = Neo4jSettings.from_env()
            self.store: Any = Neo4jStore(settings, timeout=self.timeout).__enter__()
            db = f", database {settings.database}" if settings.database else ""
            self.where = f"Neo4j at {redact(settings.uri)}{db}, run {run.run_id}"
        else:
            from featgraph.graph.embedded import EmbeddedStore

            if run.path is None:
                raise BadInput("serve needs a run directory with its embedded store (or --neo4j): "
                               "make one with `featgraph import EDGE_FILE --out DIR`, then `featgraph load DIR`")
            self.store = EmbeddedStore(run.path, timeout=self.timeout).__enter__()
            self.where = f"embedded store {run.path / 'graph.lbdb'}"

    def close(self) -> None:
        with self._lock:
            if self.store is not None:
                self.store.__exit__(None, None, None)
                self.store = None

    # ---------------------------------------------------------------- queries

    def _query(self, query: str, **params) -> pd.DataFrame:
        """A library query by name or literal read-only Cypher, as `featgraph query` runs it (Run.query: the
        parameter checks and the read-only guard), on the open store."""
        with self._lock:
            if self.store is None:
                raise BadInput("the server is shutting down")
            return self.run.query(query, neo4j=self.neo4j, open_store=self.store, **params)

    def _props(self, e: pd.DataFrame) -> pd.DataFrame:
        """`e` (src, dst, layer, head, circuit, weight) with rank and z where it lacks them, from the store: the
        library query `subgraph` over e's features (one query, a few ms) gives every edge among them."""
        want = [c for c in ("rank", "z") if c not in e.columns]
        if not want or e.empty:
            return e
        ids = list(dict.fromkeys([*e["src"].astype(str), *e["dst"].astype(str)]))
        among = self._query("subgraph", features=",".join(ids), limit=len(e) * 50 + 1000)
        keys = ["src", "dst", "layer", "head", "circuit"]
        among = among[keys + want].astype({"layer": "int64", "head": "int64"}).drop_duplicates(keys)
        return e.astype({"layer": "int64", "head": "int64"}).merge(among, on=keys, how="left")

    def _head_rows(self, layer: int, head: int, circuit: str) -> pd.DataFrame:
        """One head's and circuit's edge rows, indexed by (src, dst), strongest first (cached)."""
        key = (int(layer), int(head), str(circuit))
        if key not in self._heads:
            if self._groups is None:
                self.warm()
            rows = (self._groups or {}).get(key)
            table = self.run.edge_table
            sub = table.iloc[rows] if rows is not None else table.iloc[:0]
            sub = sub.iloc[np.argsort(-sub["weight"].abs().to_numpy(), kind="stable")]
            if len(self._heads) >= 16:  # keep the last 16 heads drawn
                self._heads.pop(next(iter(self._heads)))
            self._heads[key] = sub.set_index(["src", "dst"], drop=False)
        return self._heads[key]

    def warm(self) -> None:
        """Build what the answers read, before the first request: the label index (search), each feature's strongest
        edges (search results), the edges' adjacency (expand, paths), the feature rows (every answer's labels) and
        the edges grouped by head (a head's view)."""
        from featgraph.analyse.adjacency import Adjacency
        from featgraph.analyse.search import SearchIndex
        from featgraph.render.explorer import FeatureLookup

        if self._index is None:
            self._index = SearchIndex(self.run.features)
        if self._adj is None:
            self._adj = Adjacency(self.run.edge_table)
        if self._lookup is None:
            self._lookup = FeatureLookup(self.features)
        if self._groups is None:
            self._groups = self._adj.heads()
        self.features.index.get_indexer(self.features.index[:1])  # the index's hash table, built now, not on first use

    def _graph(self, edges: pd.DataFrame, extra=()) -> dict:
        from featgraph.render.explorer import graph_payload

        return graph_payload(edges, self._lookup if self._lookup is not None else self.features, extra)

    def _has(self, feature: str) -> bool:
        """Whether `feature` is a feature id of this run (an index lookup: `in` on a string index re-checks its
        uniqueness each time, ~25 ms at 3·10⁵ features)."""
        return bool(self.features.index.get_indexer([feature])[0] >= 0)

    def _rows(self, pos: np.ndarray) -> pd.DataFrame:
        """The run's edge rows at positions `pos` (src, dst, layer, head, circuit, weight, rank and z where present)."""
        t = self.run.edge_table
        cols = [c for c in ("src", "dst", "layer", "head", "circuit", "weight", "rank", "z") if c in t.columns]
        return t.take(np.asarray(pos, dtype="int64"))[cols].reset_index(drop=True)  # rows first: t[cols] copies every row

    # ---------------------------------------------------------------- answers

    def info(self) -> dict:
        e = self.run.edge_table
        heads = {str(int(l)): sorted(int(h) for h in g.unique()) for l, g in e.groupby("layer")["head"]}
        lib = [{"name": q.name, "description": q.description,
                "params": [{"name": p.name, "type": p.type, "default": p.default, "doc": p.doc} for p in q.params]}
               for q in self.library.values()]
        return {"run": self.run.name, "run_id": self.run.run_id, "where": self.where, "layers": self.run.layers,
                "heads": heads, "library": lib, "limits": {"edges": MAX_EDGES, "rows": MAX_ROWS},
                "edges": len(e), "features": len(self.features)}

    def search(self, text: str, limit: int = 20) -> dict:
        """Features by label words (the ranking of `featgraph search`), a feature id, or an index; each with its
        strongest edge in each direction."""
        from featgraph.analyse.search import SearchIndex

        text = (text or "").strip()
        if not text:
            raise BadInput("give some text to search feature labels for, e.g. \"numerical\", or a feature id or index")
        limit = _bounded("limit", limit, 1, MAX_SEARCH)
        if self._has(text):
            found = [text]
            scores = [None]
        else:
            if self._index is None:
                self._index = SearchIndex(self.run.features)
            ranked = self._index.rank(text, limit)
            found, scores = list(ranked["id"]), [float(s) for s in ranked["score"]]
        self.warm()
        edges: dict[str, list[dict]] = {f: [] for f in found}
        others = set()
        for side, best in zip(("src", "dst"), self._adj.strongest(found)):  # each one's strongest edge each way
            has = best >= 0
            for fid, edge in zip([f for f, h in zip(found, has) if h], _edges(self._rows(best[has]))):
                edges[fid].append({"side": side, **edge})
                others.add(edge["dst"] if side == "src" else edge["src"])
        results = [{"id": fid, "score": score, "edges": edges[fid]} for fid, score in zip(found, scores)]
        from featgraph.render.explorer import feature_payload

        lookup = self._lookup if self._lookup is not None else self.features
        feats = feature_payload(lookup, found)
        captions = {k: _caption(v, k) for k, v in feature_payload(lookup, others | set(found)).items()}
        for r in results:
            r["caption"] = captions[r["id"]]
        message = None if results else f"no feature label matches {text!r}"
        return {"results": results, "features": feats, "captions": captions, "message": message}

    def expand(self, feature: str, only_layer: int = -1, only_head: int = -1, only_circuit: str = "*", sign: int = 0,
               min_weight: float = 0.0, max_rank: int = 0, limit: int = 25) -> dict:
        """A feature's strongest edges each way (library query `neighbours`), filtered."""
        if not self._has(feature):
            raise BadValue("feature", feature, "is not a feature of this run")
        only_circuit = (only_circuit or "*").upper()
        if only_circuit not in ("*", "QK", "OV"):
            raise BadValue("only_circuit", only_circuit, "must be QK, OV or *")
        if int(sign) not in (-1, 0, 1):
            raise BadValue("sign", sign, "must be 1, -1 or 0")
        if float(min_weight) < 0 or int(max_rank) < 0:
            raise BadValue("min_weight" if float(min_weight) < 0 else "max_rank", min_weight if float(min_weight) < 0 else max_rank,
                           "must be 0 or more")
        limit = _bounded("limit", limit, 1, MAX_EDGES // 2)
        self.warm()
        out_pos, in_pos = self._adj.neighbours(  # the library query `neighbours`, from memory (tests: equal to the store's)
            feature, limit, only_layer=int(only_layer), only_head=int(only_head), only_circuit=only_circuit,
            sign=int(sign), min_weight=float(min_weight), max_rank=int(max_rank))
        e = self._rows(np.r_[out_pos, in_pos]).drop_duplicates(["layer", "head", "circuit", "src", "dst"])
        out = self._graph(e, [feature])
        if e.empty:
            out["message"] = "no edge of this feature passes the filters"
        return out

    def head(self, layer: int, head: int, circuit: str, limit: int = 60) -> dict:
        """One head's `limit` strongest edges of one circuit, for the two-column layout: the rows of the library's
        `top_edges` (tests check they are the same), read from the run's edge table grouped by head once, as the
        embedded store scans every edge for it (0.3-0.5 s at 10⁶ edges)."""
        from featgraph.analyse.filters import circuit_param

        limit = _bounded("limit", limit, 1, MAX_EDGES)
        circ = circuit_param(circuit)
        layer = self.run._layer(None if int(layer) == -1 else int(layer))
        self.warm()
        heads = sorted({int(h) for (l, h, _) in (self._groups or {}) if int(l) == layer})
        if int(head) not in heads:
            raise BadValue("head", head, f"has no edges in layer {layer} of this run: heads present are {', '.join(map(str, heads))}")
        pos = (self._groups or {}).get((layer, int(head), str(circ)), np.zeros(0, dtype="int64"))
        a = self._adj.absw[pos]
        if len(pos) > limit:  # the limit strongest and the edges tied with the limit-th (ordered below by src, dst)
            kth = np.partition(a, len(a) - limit)[len(a) - limit]
            pos = pos[a >= kth]
        rows = self._rows(pos)
        top = rows.assign(_a=np.abs(rows["weight"].to_numpy())).sort_values(["_a", "src", "dst"], ascending=[False, True, True],
                                                                            kind="stable").head(limit)
        return self._graph(top.drop(columns="_a"))

    def tetrads(self, layer: int, head: int, circuit: str, limit: int = 12) -> dict:
        """One head's strongest tetrads (library query `tetrads`) and their four edges each."""
        limit = _bounded("limit", limit, 1, MAX_EDGES // 4)
        t = self._query("tetrads", layer=int(layer), head=int(head), circuit=circuit, limit=limit)
        circ, rows, motifs = str(circuit).upper(), [], []
        for r in t.itertuples(index=False):
            keys = []
            for s, d, w in ((r.src_a, r.dst_x, r.w_ax), (r.src_a, r.dst_y, r.w_ay), (r.src_b, r.dst_x, r.w_bx), (r.src_b, r.dst_y, r.w_by)):
                rows.append({"src": s, "dst": d, "weight": w})
                keys.append("|".join(map(str, (circ, int(layer), int(head), s, d))))
            motifs.append({"a": r.src_a, "b": r.src_b, "x": r.dst_x, "y": r.dst_y, "strength": float(r.strength), "edges": keys})
        e = pd.DataFrame(rows, columns=["src", "dst", "weight"]).assign(layer=int(layer), head=int(head), circuit=circ)
        e = e.drop_duplicates(["src", "dst"])
        if not e.empty:  # rank and z from the head's rows in the run's edge table (one head: indexed once, cached)
            rows = self._head_rows(int(layer), int(head), circ).reindex(pd.MultiIndex.from_arrays([e["src"], e["dst"]]))
            e = e.assign(**{c: rows[c].to_numpy() for c in ("rank", "z") if c in rows.columns})
        out = self._graph(e)
        out["tetrads"] = motifs
        out["captions"] = {k: _caption(v, k) for k, v in out["features"].items()}
        if not motifs:
            out["message"] = f"head {head} of layer {layer} has no {circ} tetrad"
        return out

    def paths(self, layer: int = -1, limit: int = 20) -> dict:
        """The strongest cross-layer 2-step paths (library query `cross_layer_paths`, answered from memory: tests
        check it equals the store's), their two edges each."""
        limit = _bounded("limit", limit, 1, MAX_EDGES // 2)
        self.warm()
        p = self._adj.paths(int(layer), limit)
        one, two = self._rows(p["first"].to_numpy()), self._rows(p["second"].to_numpy())
        paths = []
        for a, b, product in zip(one.itertuples(index=False), two.itertuples(index=False), p["product"]):
            paths.append({"src": a.src, "mid": a.dst, "dst": b.dst, "layer": int(a.layer), "head": int(a.head),
                          "circuit": b.circuit, "next_head": int(b.head), "product": float(product),
                          "edges": ["|".join(map(str, (x.circuit, int(x.layer), int(x.head), x.src, x.dst))) for x in (a, b)]})
        e = pd.concat([one, two]).sort_index(kind="stable").reset_index(drop=True)  # each path's two edges in turn
        e = e.drop_duplicates(["src", "dst", "layer", "head", "circuit"])
        out = self._graph(e)
        out["paths"] = paths
        out["captions"] = {k: _caption(v, k) for k, v in out["features"].items()}
        if not paths:
            out["message"] = "no cross-layer path: the run needs edges at consecutive layers" if len(self.run.layers) < 2 else "no path"
        return out

    def connect(self, feature: str, other: str, limit: int = 100) -> dict:
        """The heads connecting two features directly (library query `connecting_heads`)."""
        e = self._query("connecting_heads", feature=feature, other=other, limit=_bounded("limit", limit, 1, MAX_EDGES))
        return self._graph(e, [feature, other])

    def console(self, query: str, params: dict[str, Any] | None = None) -> dict:
        """The console: a library query by name with its parameters, or read-only Cypher (the guard of `featgraph
        query`). Rows beyond MAX_ROWS are not sent (the answer says so); edges it names are drawn."""
        query = (query or "").strip()
        if not query:
            raise BadInput("give a library query name or read-only Cypher")
        params = {str(k): v for k, v in (params or {}).items() if v is not None and v != ""}
        if query in self.library:
            df = self._query(query, **{k: str(v) for k, v in params.items()})
            from featgraph.render.explorer import fixed_columns

            df = fixed_columns(df, {p.name: p.default for p in self.library[query].params} | params, self.run.layers)
        elif not any(c.isspace() for c in query):
            raise BadInput(f"no library query {query!r}: pick one of {', '.join(self.library)}, or write Cypher")
        else:
            df = self._query(query, **params)
        total = len(df)
        shown = df.head(MAX_ROWS)
        out = {"columns": [str(c) for c in shown.columns], "rows": [[_cell(v) for v in row] for row in shown.itertuples(index=False)],
               "total": total, "truncated": total > MAX_ROWS}
        if total > MAX_ROWS:
            out["message"] = f"the query returned {total:,} rows; the page shows the first {MAX_ROWS:,} (add LIMIT, or use `featgraph query` for all)"
        from featgraph.render.explorer import result_edges

        edges = result_edges(shown)
        if edges is not None and len(edges):
            out["graph"] = self._graph(self._props(edges.head(MAX_EDGES)))
        return out

    def pinned_edges(self, features: list[str]) -> pd.DataFrame:
        """The run's edge rows among `features` (both ends pinned), strongest first: what the exports hold. The
        library query `subgraph` gives the same edges from the store (tests check that)."""
        ids = _feature_list(features, self.features)
        t = self.run.edge_table
        e = t[t["src"].isin(ids) & t["dst"].isin(ids)]
        order = e.assign(_a=e["weight"].abs()).sort_values(["_a", "layer", "head", "circuit", "src", "dst"],
                                                           ascending=[False, True, True, True, True, True], kind="stable")
        return e.loc[order.index]

    def export(self, fmt: str, features: list[str]) -> tuple[bytes, str, str]:
        """The pinned subgraph as (bytes, content type, file name): graphml, csv, html (the `viz` page), or cypher
        (the library query `subgraph` and the command that runs it)."""
        ids = _feature_list(features, self.features)
        if fmt == "cypher":
            joined = ",".join(ids)
            store = "neo4j" if self.neo4j else "embedded"
            where = (f"// or in Neo4j Browser, after :param features => {_cypher_string(joined)}\n" if self.neo4j else
                     f"// or run this file: featgraph query RUN --file pinned.cypher --param features={joined}\n")
            text = (f"// The pinned subgraph of run {self.run.name}: {len(ids)} features and the edges among them.\n"
                    f"// Reproduce it with:\n//   featgraph query RUN subgraph --param features={joined}{' --neo4j' if self.neo4j else ''}\n"
                    f"{where}// (the library query `subgraph`, the {store} store's text)\n" + self.library["subgraph"].text_for(store))
            return text.encode(), "text/plain; charset=utf-8", "pinned.cypher"
        if fmt not in ("csv", "graphml", "html"):
            raise BadValue("format", fmt, "must be graphml, csv, html or cypher")
        e = self.pinned_edges(ids)
        if fmt == "csv":
            desc = self.features["description"]
            from featgraph.render.text import csv_safe

            out = e.assign(src_description=e["src"].map(desc), dst_description=e["dst"].map(desc))
            return csv_safe(out).to_csv(index=False).encode(), "text/csv; charset=utf-8", "pinned.csv"
        if fmt == "graphml":
            import tempfile
            from pathlib import Path

            from featgraph.graph.nxgraph import to_networkx, write_graphml

            g = to_networkx(e, self.run.features[self.run.features["id"].isin(ids)], self.run.run_id)
            with tempfile.TemporaryDirectory() as tmp:
                path = write_graphml(g, Path(tmp) / "pinned.graphml")
                return path.read_bytes(), "application/graphml+xml", "pinned.graphml"
        from featgraph.render.viz import MAX_EDGES as PAGE_EDGES
        from featgraph.render.viz import build_html

        if e.empty:
            raise BadInput("the pinned features have no edge among them: a page needs at least one edge")
        if len(e) > PAGE_EDGES:
            raise BadInput(f"the pinned features hold {len(e):,} edges among them; a static page shows at most {PAGE_EDGES:,}: "
                           "export GraphML or CSV, or pin fewer")
        pages = {f"pinned-{c.lower()}.html": build_html(g, self.run.features, f"{self.run.name}: pinned features, {c}, {len(g)} edges", ids)
                 for c, g in e.groupby("circuit")}  # a viz page draws one circuit
        if len(pages) == 1:
            (name, html), = pages.items()
            return html.encode(), "text/html; charset=utf-8", name
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, html in pages.items():
                z.writestr(name, html)
        return buf.getvalue(), "application/zip", "pinned-pages.zip"


# ---------------------------------------------------------------- helpers

def _bounded(name: str, value, lo: int, hi: int) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise BadValue(name, value, "must be a whole number") from None
    if v < lo:
        raise BadValue(name, v, f"must be at least {lo}")
    if v > hi:
        raise BadValue(name, v, f"asks for more than the page draws at once ({hi:,}): lower it")
    return v


def _feature_list(features, known: pd.DataFrame) -> list[str]:
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise BadInput("pin features first: the export is the pinned features and the edges among them")
    ids = list(dict.fromkeys(features))
    bad = [f for f in ids if f not in known.index or "," in f]
    if bad:
        raise BadValue("features", bad[0], "is not a feature of this run")
    return ids


def _edges(e: pd.DataFrame) -> list[dict]:
    from featgraph.render.explorer import edge_payload

    return edge_payload(e)


def _caption(f: dict, fid: str) -> str:
    idx = f.get(FEATURE_INDEX) if f.get(FEATURE_INDEX) is not None else fid.rsplit("/", 1)[-1]
    return f"{idx}: {f['description']}" if f.get("description") else str(idx)


def _cell(v):
    if v is None:
        return None
    if isinstance(v, (bool, int, str)):
        return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, float):
        return v
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def _cypher_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

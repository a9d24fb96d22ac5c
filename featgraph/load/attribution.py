"""Attribution graphs: circuit-tracer / Neuronpedia graph JSON (schema "1.0.0"), read by streaming.

docs/graph.md, "Attribution graphs". A file holds `metadata` (slug, scan, prompt, prompt_tokens, …), `qParams`,
`nodes` and `links` (and, from Neuronpedia's QK tracing, per-node `qk_tracing_results` and a top-level
`qk_only_nodes`). The reader never holds the links in memory: it reads the file twice with ijson's C parser
(yajl2_c) —
  1. the JSON events up to the top-level "links" key: metadata, qParams and nodes (small: one row per node);
  2. `links.item` objects, built in C, checked and written to Parquet in batches of `batch` links.
Parts a writer put after "links" are read by one more pass over the file. A gzip file (by its magic bytes) is
read through gzip. Every problem is a BadInput naming the node (`nodes[3] (node_id 0_5_1)`) or the link
(`links[17] (2_8_1 -> 5_3_2)`); the caller writes into a staged directory, so nothing is half-written.

A feature node's index is decoded from its `feature` field: the Cantor pairing of (layer, index) when
`metadata.schema_version` is 1 (circuit-tracer since 0.2, Neuronpedia's generator), else the older Gemma 2
encoding `int(f"{layer}{index:05d}")` that Neuronpedia's viewer reads for files without a schema version. The
node_id is never parsed: its format differs between writers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featgraph.core.schema import ATTRIBUTION_LINK_COLUMNS, ATTRIBUTION_NODE_COLUMNS, FEATURE_INDEX, feature_id
from featgraph.errors import BadInput, MissingValue

# feature_type (as the file spells it) -> featgraph's node kind. Neuronpedia's viewer knows these.
NODE_KINDS = {
    "cross layer transcoder": "feature",  # transcoder / CLT features (circuit-tracer writes this for every transcoder)
    "lorsa": "feature",  # attention (Lorsa) features, Neuronpedia's generator
    "mlp reconstruction error": "error",
    "lorsa error": "error",
    "embedding": "embedding",
    "logit": "logit",
    "bias": "bias",  # bias leaves of Neuronpedia's QK tracing
}
BATCH = 1_000_000  # links per Parquet row group; ~100 MB of Python objects at a time
_GZIP_MAGIC = b"\x1f\x8b"


def cantor_pair(layer: int, index: int) -> int:
    """Cantor's pairing of two non-negative integers, as circuit-tracer encodes (layer, feature index)."""
    return (layer + index) * (layer + index + 1) // 2 + index


def cantor_unpair(z: int) -> tuple[int, int]:
    """(layer, index) with cantor_pair(layer, index) == z (exact integer arithmetic)."""
    w = (math.isqrt(8 * z + 1) - 1) // 2
    t = w * (w + 1) // 2
    index = z - t
    return w - index, index


@dataclass(frozen=True)
class GraphInfo:
    """What an imported graph is: its metadata (as the file has it) and what featgraph made of it."""

    slug: str
    scan: str
    model_id: str
    source_set: str | None
    lorsa_source_set: str | None
    prompt: str
    prompt_tokens: tuple[str, ...]
    schema_version: int | None
    nodes: int
    links: int
    kinds: dict[str, int]
    sha256: str
    bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    qparams: dict[str, Any] = field(default_factory=dict)
    qk_only_nodes: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["prompt_tokens"] = list(self.prompt_tokens)
        return d


class _Hashing(io.RawIOBase):
    """A raw reader that hashes and counts the bytes read through it."""

    def __init__(self, raw):
        self.raw, self.h, self.n = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.raw.readinto(b)
        if n:
            self.h.update(memoryview(b)[:n])
            self.n += n
        return n or 0


def _open(path: Path, hashing: bool = False):
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller's `with`
    head = raw.read(2)
    raw.seek(0)
    src = io.BufferedReader(_Hashing(raw), 1 << 20) if hashing else raw
    if head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=src, mode="rb"), src, raw
    return src, src, raw


_ABSENT = object()


def _first(path: Path, key: str) -> Any:
    """A top-level key's value, read by a streaming pass of its own (for keys a writer put after the links);
    _ABSENT when the file has none."""
    import ijson

    with _open(path)[0] as f:
        return next(iter(ijson.items(f, key, use_float=True)), _ABSENT)


class _Where:
    """The last complete item read, for error messages about a truncated or malformed file."""

    def __init__(self) -> None:
        self.text = "the start of the file"


def _where_node(i: int, node: object) -> str:
    nid = node.get("node_id") if isinstance(node, dict) else None
    return f"nodes[{i}]" + (f" (node_id {nid})" if isinstance(nid, str) else "")


def _is_int(v: object) -> bool:
    return type(v) is int


def _is_num(v: object) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)


class _Reader:
    def __init__(self, path: Path, model_id: str | None, source_set: str | None, lorsa_source_set: str | None):
        import ijson

        self.ijson = ijson
        self.path = Path(path)
        self.name = self.path.name
        self.model_id, self.source_set, self.lorsa_source_set = model_id, source_set, lorsa_source_set
        self.metadata: dict | None = None
        self.qparams: dict | None = None
        self.qk_only: dict | None = None
        self.node_rows: list[dict] | None = None
        self.where = _Where()

    # ------------------------------------------------------------ errors

    def bad(self, what: str) -> BadInput:
        return BadInput(f"{self.name}: {what}")

    def _json_error(self, e: Exception) -> BadInput:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        return self.bad(f"the file is truncated or is not JSON ({msg}) after {self.where.text}; "
                        "nothing was imported")

    # ------------------------------------------------------------ pass 1: everything before "links"

    def head(self) -> bool:
        """Read the top level up to "links"; True if the links array starts there."""
        ijson = self.ijson
        with _open(self.path)[0] as f:
            events = ijson.parse(f, use_float=True)
            try:
                first = next(events, None)
                if first is None or first[1] != "start_map":
                    raise self.bad("is not a graph: the file must hold one JSON object with metadata, qParams, nodes and links")
                for prefix, event, value in events:
                    if prefix == "" and event == "end_map":
                        return False
                    if prefix != "" or event != "map_key":
                        continue
                    key = value
                    nxt = next(events)
                    if key == "links":
                        if nxt[1] != "start_array":
                            raise self.bad(f"links must be an array of links, not {_kind(nxt[1])}")
                        return True
                    if key == "nodes":
                        if nxt[1] != "start_array":
                            raise self.bad(f"nodes must be an array of nodes, not {_kind(nxt[1])}")
                        self.node_rows = []
                        for obj in _items(events):
                            self._node(len(self.node_rows), obj)
                            self.where.text = _where_node(len(self.node_rows) - 1, obj)
                        continue
                    obj = _value(events, nxt)
                    if key == "metadata":
                        self._metadata(obj)
                        self.where.text = "metadata"
                    elif key == "qParams":
                        if not isinstance(obj, dict):
                            raise self.bad(f"qParams must be an object, not {_kind_of(obj)}")
                        self.qparams = obj
                        self.where.text = "qParams"
                    elif key == "qk_only_nodes":
                        self._qk_only(obj)
                return False
            except ijson.JSONError as e:
                raise self._json_error(e) from None
            except (EOFError, gzip.BadGzipFile, OSError) as e:
                raise self._json_error(e) from None

    def tail(self, keys: set[str]) -> None:
        """Read top-level `keys` that come after "links" (one more pass, only for such files)."""
        ijson = self.ijson
        try:
            if "metadata" in keys and (obj := _first(self.path, "metadata")) is not _ABSENT:
                self._metadata(obj)
            if "qParams" in keys and (obj := _first(self.path, "qParams")) is not _ABSENT:
                if not isinstance(obj, dict):
                    raise self.bad(f"qParams must be an object, not {_kind_of(obj)}")
                self.qparams = obj
            if "nodes" in keys:
                self.node_rows = []
                with _open(self.path)[0] as f:
                    for obj in ijson.items(f, "nodes.item", use_float=True):
                        self._node(len(self.node_rows), obj)
                        self.where.text = _where_node(len(self.node_rows) - 1, obj)
            if "qk_only_nodes" in keys and (obj := _first(self.path, "qk_only_nodes")) is not _ABSENT:
                self._qk_only(obj)
        except (ijson.JSONError, EOFError, gzip.BadGzipFile, OSError) as e:
            raise self._json_error(e) from None

    # ------------------------------------------------------------ parts

    def _metadata(self, m: object) -> None:
        if not isinstance(m, dict):
            raise self.bad(f"metadata must be an object, not {_kind_of(m)}")
        for key in ("slug", "scan", "prompt"):
            if not isinstance(m.get(key), str):
                raise self.bad(f"metadata.{key} must be a string, got {_kind_of(m.get(key))}")
        toks = m.get("prompt_tokens")
        if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
            raise self.bad(f"metadata.prompt_tokens must be a list of strings, got {_kind_of(toks)}")
        sv = m.get("schema_version")
        if sv is not None and not _is_int(sv):
            raise self.bad(f"metadata.schema_version must be an integer, got {sv!r}")
        self.metadata = m

    def _qk_only(self, obj: object) -> None:
        if not isinstance(obj, dict):
            raise self.bad(f"qk_only_nodes must be an object keyed by node_id, not {_kind_of(obj)}")
        self.qk_only = obj

    def _node(self, i: int, n: object) -> None:
        """Check node i and keep it (decoding comes later, when the metadata is known)."""
        assert self.node_rows is not None
        where = _where_node(i, n)
        if not isinstance(n, dict):
            raise self.bad(f"{where} must be an object, not {_kind_of(n)}")
        nid = n.get("node_id")
        if not isinstance(nid, str) or not nid:
            raise self.bad(f"{where}: node_id must be a non-empty string, got {_kind_of(nid)}")
        ftype = n.get("feature_type")
        if not isinstance(ftype, str):
            raise self.bad(f"{where}: feature_type must be a string, got {_kind_of(ftype)}")
        kind = NODE_KINDS.get(ftype)
        if kind is None:
            raise self.bad(f"{where}: unknown node kind feature_type {ftype!r}; featgraph reads {', '.join(map(repr, NODE_KINDS))}")
        layer = n.get("layer")
        if isinstance(layer, str) and layer != "E":
            layer = int(layer) if layer.isdigit() else layer
        if kind == "embedding" and layer in ("E", None):
            layer = None
        elif not _is_int(layer) or layer < 0:
            raise self.bad(f"{where}: layer must be a non-negative integer (or \"E\" for an embedding), got {n.get('layer')!r}")
        ctx = n.get("ctx_idx")
        if not _is_int(ctx) or ctx < 0:
            raise self.bad(f"{where}: ctx_idx must be a non-negative integer, got {ctx!r}")
        feat = n.get("feature")
        if feat is not None and not _is_int(feat):
            raise self.bad(f"{where}: feature must be an integer or null, got {feat!r}")
        if kind == "feature" and (feat is None or feat < 0):
            raise self.bad(f"{where}: a {ftype} node needs its feature number (the encoded layer and index), got {feat!r}")
        for key in ("activation", "influence", "token_prob"):
            v = n.get(key)
            if v is not None and not _is_num(v):
                raise self.bad(f"{where}: {key} must be a number or null, got {v!r}")
        for key in ("clerp", "jsNodeId", "token"):
            v = n.get(key)
            if v is not None and not isinstance(v, str):
                raise self.bad(f"{where}: {key} must be a string, got {v!r}")
        target = n.get("is_target_logit")
        if target is not None and not isinstance(target, bool):
            raise self.bad(f"{where}: is_target_logit must be true or false, got {target!r}")
        qk = n.get("qk_tracing_results")
        if qk is not None:
            self._qk_results(where, qk)
        self.node_rows.append({
            "node_id": nid, "kind": kind, "feature_type": ftype, "layer": layer, "ctx_idx": ctx, "feature": feat,
            "activation": n.get("activation"), "influence": n.get("influence"), "clerp": n.get("clerp") or "",
            "token": n.get("token"), "token_prob": n.get("token_prob"), "is_target_logit": target,
            "qk_tracing_results": None if qk is None else json.dumps(qk),
        })

    def _qk_results(self, where: str, qk: object) -> None:
        shapes = {"pair_wise_contributors": (str, str, float), "top_q_marginal_contributors": (str, float),
                  "top_k_marginal_contributors": (str, float)}
        if not isinstance(qk, dict):
            raise self.bad(f"{where}: qk_tracing_results must be an object, got {_kind_of(qk)}")
        for key, shape in shapes.items():
            rows = qk.get(key)
            if not isinstance(rows, list):
                raise self.bad(f"{where}: qk_tracing_results.{key} must be a list, got {_kind_of(rows)}")
            for j, row in enumerate(rows):
                ok = isinstance(row, list) and len(row) == len(shape) and all(
                    isinstance(v, str) if t is str else _is_num(v) for v, t in zip(row, shape))
                if not ok:
                    want = "[q_node_id, k_node_id, attribution]" if len(shape) == 3 else "[node_id, attribution]"
                    raise self.bad(f"{where}: qk_tracing_results.{key}[{j}] must be {want}, got {row!r}")

    # ------------------------------------------------------------ nodes -> table

    def nodes_table(self):
        """The node rows decoded (feature index, Neuronpedia id, tokens) as an Arrow table."""
        import pyarrow as pa

        assert self.metadata is not None and self.node_rows is not None
        m = self.metadata
        tokens = m["prompt_tokens"]
        model = self.model_id or m["scan"]
        details = m.get("feature_details") if isinstance(m.get("feature_details"), dict) else {}
        info = m.get("info") if isinstance(m.get("info"), dict) else {}
        sets = {"cross layer transcoder": self.source_set or details.get("neuronpedia_source_set") or info.get("neuronpedia_source_set"),
                "lorsa": self.lorsa_source_set or details.get("neuronpedia_lorsa_source_set")}
        self.source_set, self.lorsa_source_set = sets["cross layer transcoder"], sets["lorsa"]
        cantor = m.get("schema_version") == 1
        seen: dict[str, int] = {}
        for i, r in enumerate(self.node_rows):
            where = f"nodes[{i}] (node_id {r['node_id']})"
            if r["node_id"] in seen:
                raise self.bad(f"{where} repeats the node_id of nodes[{seen[r['node_id']]}]: links to it would be ambiguous")
            seen[r["node_id"]] = i
            if r["ctx_idx"] >= len(tokens) and r["kind"] != "logit":
                raise self.bad(f"{where}: ctx_idx {r['ctx_idx']} is past the prompt's {len(tokens)} tokens")
            r[FEATURE_INDEX] = r["feature_id"] = None
            if r["kind"] == "embedding" and r["token"] is None:
                r["token"] = tokens[r["ctx_idx"]]
            if r["kind"] != "feature":
                continue
            layer, feat = r["layer"], r["feature"]
            if cantor:
                dl, index = cantor_unpair(feat)
                if dl != layer:
                    raise self.bad(f"{where}: feature {feat} decodes (Cantor pairing, schema_version 1) to layer {dl}, "
                                   f"not the node's layer {layer}")
            else:
                dl, index = divmod(feat, 100_000)
                if dl != layer:
                    raise self.bad(f"{where}: feature {feat} is not layer {layer} followed by a 5-digit index, as files "
                                   "without metadata.schema_version encode it (schema_version 1: a Cantor pairing)")
            r[FEATURE_INDEX] = index
            sset = sets[r["feature_type"]]
            if sset is None:
                param = "source_set" if r["feature_type"] != "lorsa" else "lorsa_source_set"
                raise MissingValue(param, f"the graph's {r['feature_type']} features need their Neuronpedia source set, "
                                          "e.g. gemmascope-transcoder-16k (the file names none in metadata.feature_details)")
            r["feature_id"] = feature_id(model, f"{layer}-{sset}", index)
        cols = {name: [r[name] for r in self.node_rows] for name in ATTRIBUTION_NODE_COLUMNS}
        return pa.table({name: pa.array(cols[name], type=_arrow(t)) for name, t in ATTRIBUTION_NODE_COLUMNS.items()})

    # ------------------------------------------------------------ pass 2: links

    def links(self, out: Path, node_ids, batch: int) -> tuple[int, str, int]:
        """Stream the links into `out` (Parquet); returns (links, sha256 of the file, its bytes)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        ijson = self.ijson
        schema = pa.schema([(k, _arrow(t)) for k, t in ATTRIBUTION_LINK_COLUMNS.items()])
        value_set = pa.array(node_ids, pa.string())
        n = 0
        src: list = []
        dst: list = []
        w: list = []

        def flush(writer) -> None:
            nonlocal n
            s, d = pa.array(src, pa.string()), pa.array(dst, pa.string())
            for name, arr in (("source", s), ("target", d)):
                known = pc.is_in(arr, value_set=value_set)
                if not pc.all(known).as_py():
                    j = pc.index(known, False).as_py()
                    raise self.bad(f"links[{n + j}] ({src[j]} -> {dst[j]}): {name} {arr[j].as_py()} is not a node of the graph")
            writer.write_table(pa.table([s, d, pa.array(w, pa.float64())], schema=schema))
            n += len(src)
            src.clear()
            dst.clear()
            w.clear()

        f, hashed, raw = _open(self.path, hashing=True)
        try:
            with f, raw, pq.ParquetWriter(out, schema) as writer:
                try:
                    for i, link in enumerate(ijson.items(f, "links.item", use_float=True)):
                        if type(link) is not dict:
                            raise self.bad(f"links[{i}] must be an object with source, target and weight, not {_kind_of(link)}")
                        s_, d_, x = link.get("source"), link.get("target"), link.get("weight")
                        if type(s_) is not str or type(d_) is not str or not (type(x) is float or type(x) is int):
                            raise self.bad(f"links[{i}]{_link_name(s_, d_)}: " + _link_problem(s_, d_, x))
                        src.append(s_)
                        dst.append(d_)
                        w.append(x)
                        if len(src) >= batch:
                            flush(writer)
                            self.where.text = f"links[{i}]"
                    if src:
                        flush(writer)
                    # read to the end (the hash covers the whole file)
                    while hashed.read(1 << 20):
                        pass
                except ijson.JSONError as e:
                    self.where.text = f"links[{n + len(src) - 1}]" if n + len(src) else "the start of the links"
                    raise self._json_error(e) from None
                except (EOFError, gzip.BadGzipFile, OSError) as e:
                    self.where.text = f"links[{n + len(src) - 1}]" if n + len(src) else "the start of the links"
                    raise self._json_error(e) from None
        finally:
            raw.close()
        inner = hashed.raw if isinstance(hashed, io.BufferedReader) else hashed
        return n, inner.h.hexdigest(), inner.n


def _link_name(s: object, d: object) -> str:
    return f" ({s} -> {d})" if isinstance(s, str) and isinstance(d, str) else ""


def _link_problem(s: object, d: object, x: object) -> str:
    if not isinstance(s, str):
        return f"source must be a node_id string, got {_kind_of(s)}"
    if not isinstance(d, str):
        return f"target must be a node_id string, got {_kind_of(d)}"
    return f"weight must be a number, got {x!r}"


def _items(events) -> Iterator[Any]:
    """The values of the array whose start_array was just read, built one at a time."""
    for prefix, event, value in events:
        if event == "end_array":
            return
        yield _value(events, (prefix, event, value))


def _value(events, first) -> Any:
    """The JSON value starting with event `first`, built from the events that follow."""
    import ijson

    _, event, value = first
    if event not in ("start_map", "start_array"):
        return value
    b = ijson.ObjectBuilder()
    b.event(event, value)
    depth = 1
    for _, event, value in events:
        b.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return b.value
    raise EOFError("the file ended inside a value")


def _kind(event: str) -> str:
    return {"start_map": "an object", "start_array": "an array", "string": "a string", "number": "a number",
            "boolean": "a boolean", "null": "null"}.get(event, event)


def _kind_of(v: object) -> str:
    if v is None:
        return "null (or missing)"
    if isinstance(v, bool):
        return f"the boolean {json.dumps(v)}"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return f"the string {v!r}"
    return f"the number {v!r}" if isinstance(v, (int, float)) else type(v).__name__


def _arrow(t: str):
    import pyarrow as pa

    return {"STRING": pa.string(), "INT64": pa.int64(), "DOUBLE": pa.float64(), "BOOL": pa.bool_()}[t]


def read_graph(path: str | Path, out: str | Path, model_id: str | None = None, source_set: str | None = None,
               lorsa_source_set: str | None = None, batch: int = BATCH) -> GraphInfo:
    """Read an attribution graph file (.json or gzip) into `out` (an existing, empty directory): nodes.parquet
    (ATTRIBUTION_NODE_COLUMNS, one row per node, file order) and links.parquet (ATTRIBUTION_LINK_COLUMNS, file
    order); returns the graph's GraphInfo.

    model_id: the Neuronpedia model of the feature ids (default: metadata.scan); source_set / lorsa_source_set:
    the Neuronpedia source sets of its transcoder / Lorsa features (default: metadata.feature_details'). A feature
    at layer L with index i is `{model_id}/{L}-{source_set}/{i}`.
    """
    import pyarrow.parquet as pq

    path, out = Path(path), Path(out)
    if not path.is_file():
        raise BadInput(f"{path} is not a file: pass an attribution graph (.json or .json.gz)")
    if batch < 1:
        raise BadInput(f"batch must be a positive number of links, got {batch}")
    r = _Reader(path, model_id, source_set, lorsa_source_set)
    links_found = r.head()
    if not links_found:
        if r.metadata is None or r.node_rows is None:
            missing = [k for k, v in (("metadata", r.metadata), ("nodes", r.node_rows)) if v is None]
            raise r.bad(f"has no {' or '.join(missing)}: a graph needs metadata, qParams, nodes and links")
        raise r.bad("has no links array: a graph needs metadata, qParams, nodes and links")
    later = {k for k, v in (("metadata", r.metadata), ("qParams", r.qparams), ("nodes", r.node_rows)) if v is None}
    if (r.qk_only is None and r.node_rows is None) or (r.node_rows and any(x["qk_tracing_results"] for x in r.node_rows)):
        later.add("qk_only_nodes") if r.qk_only is None else None
    if later:
        r.tail(later)
    for key, v in (("metadata", r.metadata), ("qParams", r.qparams), ("nodes", r.node_rows)):
        if v is None:
            raise r.bad(f"has no {key}: a graph needs metadata, qParams, nodes and links")
    nodes = r.nodes_table()
    pq.write_table(nodes, out / "nodes.parquet")
    n_links, digest, size = r.links(out / "links.parquet", nodes.column("node_id"), batch)
    assert r.metadata is not None and r.node_rows is not None
    kinds: dict[str, int] = {}
    for x in r.node_rows:
        kinds[x["kind"]] = kinds.get(x["kind"], 0) + 1
    m = r.metadata
    return GraphInfo(slug=m["slug"], scan=m["scan"], model_id=model_id or m["scan"], source_set=r.source_set,
                     lorsa_source_set=r.lorsa_source_set, prompt=m["prompt"], prompt_tokens=tuple(m["prompt_tokens"]),
                     schema_version=m.get("schema_version"), nodes=nodes.num_rows, links=n_links, kinds=kinds,
                     sha256=digest, bytes=size, metadata=m, qparams=r.qparams or {}, qk_only_nodes=r.qk_only)


# ---------------------------------------------------------------- a graph file streamed through (QK tracing export)

def read_parts(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """Every top-level part of a graph file except its links, as the file has them (all fields of every node
    kept), checked as `read_graph` checks them; and the top-level keys in file order ("links" among them).

    One pass over the events up to "links"; the known parts a writer put after the links (metadata, qParams,
    nodes, qk_only_nodes) by one more pass each. Other keys after the links are not seen (no known writer puts
    any there)."""
    import ijson

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path} is not a file: pass an attribution graph (.json or .json.gz)")
    r = _Reader(path, None, None, None)
    parts: dict[str, Any] = {}
    order: list[str] = []
    try:
        with _open(path)[0] as f:
            events = ijson.parse(f, use_float=True)
            first = next(events, None)
            if first is None or first[1] != "start_map":
                raise r.bad("is not a graph: the file must hold one JSON object with metadata, qParams, nodes and links")
            for prefix, event, value in events:
                if prefix == "" and event == "end_map":
                    break
                if prefix != "" or event != "map_key":
                    continue
                order.append(value)
                nxt = next(events)
                if value == "links":
                    if nxt[1] != "start_array":
                        raise r.bad(f"links must be an array of links, not {_kind(nxt[1])}")
                    break
                parts[value] = _value(events, nxt)
                r.where.text = value
        if "links" in order:
            for key in ("metadata", "qParams", "nodes", "qk_only_nodes"):
                if key not in parts and (obj := _first(path, key)) is not _ABSENT:
                    parts[key] = obj
                    order.append(key)
    except (ijson.JSONError, EOFError, gzip.BadGzipFile, OSError) as e:
        raise r._json_error(e) from None
    missing = [k for k in ("metadata", "qParams", "nodes", "links") if k not in order]
    if missing:
        raise r.bad(f"has no {' or '.join(missing)}: a graph needs metadata, qParams, nodes and links")
    r._metadata(parts["metadata"])
    if not isinstance(parts["nodes"], list):
        raise r.bad(f"nodes must be an array of nodes, not {_kind_of(parts['nodes'])}")
    r.node_rows = []
    for i, n in enumerate(parts["nodes"]):
        r._node(i, n)
    if "qk_only_nodes" in parts:
        r._qk_only(parts["qk_only_nodes"])
    return parts, order


def write_graph(src: str | Path, dst: str | Path, parts: dict[str, Any], node_ids: set[str], batch: int = 100_000) -> int:
    """Write graph JSON to `dst` (gzip if its name ends in .gz): `parts` (every top-level value but the links), then
    the links of `src` streamed through one at a time, each as the file has it (checked: an object whose source
    and target are nodes of `node_ids`, a numeric weight). Returns the number of links. Compact JSON, one link a
    line; numbers keep their value (ijson's floats are written with repr, which round-trips)."""
    import ijson

    src, dst = Path(src), Path(dst)
    enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    opener = gzip.open if dst.name.lower().endswith(".gz") else open
    where = _Where()
    n = 0
    with opener(dst, "wt", encoding="utf-8") as out:
        out.write("{\n" + "".join(f"{enc(k)}:{enc(v)},\n" for k, v in parts.items()) + '"links":[')
        chunk: list[str] = []
        try:
            with _open(src)[0] as f:
                for i, link in enumerate(ijson.items(f, "links.item", use_float=True)):
                    s_, d_, x = (link.get("source"), link.get("target"), link.get("weight")) if type(link) is dict else (None, None, None)
                    if type(link) is not dict:
                        raise BadInput(f"{src.name}: links[{i}] must be an object with source, target and weight, not {_kind_of(link)}")
                    if type(s_) is not str or type(d_) is not str or not (type(x) is float or type(x) is int):
                        raise BadInput(f"{src.name}: links[{i}]{_link_name(s_, d_)}: " + _link_problem(s_, d_, x))
                    for name, end in (("source", s_), ("target", d_)):
                        if end not in node_ids:
                            raise BadInput(f"{src.name}: links[{i}] ({s_} -> {d_}): {name} {end} is not a node of the graph")
                    chunk.append(enc(link))
                    if len(chunk) >= batch:
                        out.write(("," if n else "") + "\n" + ",\n".join(chunk))
                        n += len(chunk)
                        chunk.clear()
                        where.text = f"links[{i}]"
        except ijson.JSONError as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise BadInput(f"{src.name}: the file is truncated or is not JSON ({msg}) after {where.text}; nothing was written") from None
        except (EOFError, gzip.BadGzipFile, OSError) as e:
            raise BadInput(f"{src.name}: the file is truncated or unreadable ({e.__class__.__name__}) after {where.text}; "
                           "nothing was written") from None
        if chunk:
            out.write(("," if n else "") + "\n" + ",\n".join(chunk))
            n += len(chunk)
        out.write("\n]}\n")
    return n

"""The one definition of featgraph's tables, ids and edge directions (docs/run-directory.md).

Edges follow information flow (docs/maths.md): for QK the source is the *key*
feature and the destination the *query* feature; for OV the source is the
*value* feature and the destination the *output* feature. The functions at the
end cast tables to this schema (pure: DataFrames in, DataFrames out).
"""

from __future__ import annotations

import re

import pandas as pd

from featgraph.errors import BadInput

NEURONPEDIA = "https://www.neuronpedia.org"

CIRCUITS = ("QK", "OV")

# Names of the two ends of an edge, per circuit, as a researcher reads them.
ROLES = {"QK": ("key", "query"), "OV": ("value", "output")}

# edges.parquet: required columns and their dtypes.
EDGE_COLUMNS: dict[str, str] = {
    "layer": "int32",
    "head": "int32",
    "kv_head": "int32",
    "circuit": "string",
    "src": "string",
    "src_index": "int64",
    "dst": "string",
    "dst_index": "int64",
    "weight": "float32",
    "rank": "int64",
}
# Optional columns featgraph itself writes.
EDGE_EXTRA_COLUMNS: dict[str, str] = {"z": "float32"}
# What an edge table made elsewhere must have; the rest can be derived.
EDGE_REQUIRED = ("layer", "head", "circuit", "src", "dst", "weight")

# The feature's number within its SAE (Neuronpedia's `index`, the id's last part), under one name in every table,
# store, export and page. Not `index`: LadybugDB's parser rejects it as a bare property name (`f.index`; only
# `f.`index`` parses), so Cypher that works in Neo4j would fail in the embedded store; and in pandas
# `features.index` is the row index, not the column (docs/graph.md).
FEATURE_INDEX = "feature_index"
# What features.parquet files written before this name was unified call it; read as FEATURE_INDEX.
LEGACY_FEATURE_INDEX = "index"

# features.parquet columns.
FEATURE_COLUMNS: dict[str, str] = {
    "id": "string",
    "sae": "string",
    "layer": "int32",
    FEATURE_INDEX: "int64",
    "description": "string",
    "url": "string",
}

TETRAD_COLUMNS = (
    "layer", "head", "circuit", "src_a", "src_b", "dst_x", "dst_y",
    "w_ax", "w_ay", "w_bx", "w_by", "strength",
)

_ID_RE = re.compile(r"^(?P<model>[^/]+)/(?P<source>[^/]+)/(?P<index>\d+)$")
_SOURCE_LAYER_RE = re.compile(r"^(?P<layer>\d+)-")


def feature_id(model_id: str, source_id: str, index: int) -> str:
    """Neuronpedia-style id `{model}/{source}/{index}`; also a URL path."""
    return f"{model_id}/{source_id}/{int(index)}"


def feature_url(fid: str) -> str:
    return f"{NEURONPEDIA}/{fid}"


def caption(index: int, description: object) -> str:
    """How a feature is named in tables and pages: `index: description`, or the index alone."""
    return f"{int(index)}: {description}" if isinstance(description, str) and description else str(int(index))


def parse_feature_id(fid: str) -> tuple[str, str, int]:
    """Split an id into (model, source, index); raise ValueError if malformed."""
    m = _ID_RE.match(fid)
    if not m:
        raise ValueError(fid)
    return m["model"], m["source"], int(m["index"])


def source_layer(source_id: str) -> int | None:
    """The layer a Neuronpedia source id starts with (`12-gemmascope-res-16k` -> 12)."""
    m = _SOURCE_LAYER_RE.match(source_id)
    return int(m["layer"]) if m else None


def normalise_circuit(name: str) -> str:
    """`qk`/`QK` -> `QK`; raise ValueError for anything else."""
    up = str(name).strip().upper()
    if up not in CIRCUITS:
        raise ValueError(name)
    return up


# ---------------------------------------------------------------- casting tables to the schema

def edges_frame(df: pd.DataFrame) -> pd.DataFrame:
    """An edge table with the schema's dtypes and column order (extra columns dropped)."""
    cols = list(EDGE_COLUMNS) + [c for c in EDGE_EXTRA_COLUMNS if c in df.columns]
    out = df[cols].copy()
    for col in cols:
        dtype = EDGE_COLUMNS.get(col) or EDGE_EXTRA_COLUMNS[col]
        out[col] = out[col].astype(dtype)
    return out.reset_index(drop=True)


def upgrade_features(df: pd.DataFrame) -> pd.DataFrame:
    """A feature table as read from any version's features.parquet (or a label table written the old way): the old
    column `index` named FEATURE_INDEX."""
    if LEGACY_FEATURE_INDEX in df.columns and FEATURE_INDEX not in df.columns:
        return df.rename(columns={LEGACY_FEATURE_INDEX: FEATURE_INDEX})
    return df


def features_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A feature table with the schema's dtypes, sorted by (sae, feature_index) (an old table's `index` renamed)."""
    out = upgrade_features(df)[list(FEATURE_COLUMNS)].copy()
    for col, dtype in FEATURE_COLUMNS.items():
        out[col] = out[col].astype(dtype)
    return out.sort_values(["sae", FEATURE_INDEX], kind="stable").reset_index(drop=True)


def features_from_edges(edges: pd.DataFrame) -> pd.DataFrame:
    """One row per feature id appearing in `edges` (ids must be `model/source/index`).

    The layer is the number a Neuronpedia source id starts with (`12-gemmascope-res-16k`), -1 if none.
    """
    ids = pd.unique(pd.concat([edges["src"], edges["dst"]], ignore_index=True))
    rows = []
    for fid in ids:
        try:
            _, source, index = parse_feature_id(fid)
        except ValueError:
            raise BadInput(f"feature id {fid!r} is not MODEL/SOURCE/INDEX (e.g. gemma-2-2b/12-gemmascope-res-16k/8517)") from None
        layer = source_layer(source)
        rows.append({"id": fid, "sae": source, "layer": -1 if layer is None else layer, FEATURE_INDEX: index,
                     "description": None, "url": feature_url(fid)})
    return features_frame(pd.DataFrame(rows, columns=list(FEATURE_COLUMNS)))


def rank_edges(edges: pd.DataFrame) -> pd.DataFrame:
    """Recompute `rank` (1 = largest |weight|) within each (layer, head, circuit)."""
    e = edges.copy()
    e["_abs"] = e["weight"].astype("float64").abs()
    e = e.sort_values(["layer", "head", "circuit", "_abs", "src_index", "dst_index"],
                      ascending=[True, True, True, False, True, True], kind="stable")
    e["rank"] = e.groupby(["layer", "head", "circuit"]).cumcount() + 1
    return e.drop(columns="_abs").reset_index(drop=True)

# Attribution graphs (circuit-tracer / Neuronpedia graph JSON): an imported graph's nodes.parquet and links.parquet
# (docs/graph.md, "Attribution graphs"), typed in the stores' vocabulary. Links name their ends by node_id.
ATTRIBUTION_NODE_COLUMNS: dict[str, str] = {
    "node_id": "STRING", "kind": "STRING", "feature_type": "STRING", "layer": "INT64", "ctx_idx": "INT64",
    "feature": "INT64", FEATURE_INDEX: "INT64", "feature_id": "STRING", "activation": "DOUBLE", "influence": "DOUBLE",
    "clerp": "STRING", "token": "STRING", "token_prob": "DOUBLE", "is_target_logit": "BOOL", "qk_tracing_results": "STRING",
}
ATTRIBUTION_LINK_COLUMNS: dict[str, str] = {"source": "STRING", "target": "STRING", "weight": "DOUBLE"}


def contiguous(df: pd.DataFrame, inplace: bool = False) -> pd.DataFrame:
    """`df` with each Arrow-backed column in one chunk (equal values and dtypes); `df` itself when every column
    already is. A parquet read leaves string columns in several chunks, and taking k rows of a chunked column
    first concatenates every chunk (O(rows), ~10 ms at 4·10⁵ rows). With `inplace`, columns are replaced one at a
    time in `df` (a frame the caller owns), so memory grows by one column at most."""
    import pyarrow as pa

    chunked = [c for c in df.columns if getattr(getattr(df[c].array, "_pa_array", None), "num_chunks", 1) > 1]
    if not chunked:
        return df
    out = df if inplace else df.copy(deep=False)
    for c in chunked:
        arr = out[c].array
        chunks = arr._pa_array
        out[c] = pd.Series(type(arr)(pa.chunked_array([chunks.combine_chunks()], type=chunks.type)), index=out.index, name=c)
    return out

"""The one definition of featgraph's tables, ids and edge directions.

Edges follow information flow (SPEC section 3): for QK the source is the *key*
feature and the destination the *query* feature; for OV the source is the
*value* feature and the destination the *output* feature.
"""

from __future__ import annotations

import re

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

# features.parquet columns (file contract: SPEC section 4 names it `index`).
FEATURE_COLUMNS: dict[str, str] = {
    "id": "string",
    "sae": "string",
    "layer": "int32",
    "index": "int64",
    "description": "string",
    "url": "string",
}

# In graph stores the feature index is `feature_index`: `index` is reserved in
# some Cypher engines (Kùzu/LadybugDB), and one name must work everywhere.
GRAPH_FEATURE_INDEX = "feature_index"

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

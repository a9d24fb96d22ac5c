"""The run directory (SPEC 4): write it whole or not at all, read it back.

A run holds `edges.parquet`, `features.parquet` and `manifest.json`; later
stages add files (`tetrads.parquet`, the graph store). Every write goes to a
temporary name first and is renamed into place, so an interrupted command never
leaves a half-written file or directory behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from featgraph import __version__
from featgraph.errors import BadInput, FeatgraphError
from featgraph.schema import (
    EDGE_COLUMNS, EDGE_EXTRA_COLUMNS, EDGE_REQUIRED, FEATURE_COLUMNS,
    feature_url, normalise_circuit, parse_feature_id, source_layer,
)

EDGES = "edges.parquet"
FEATURES = "features.parquet"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Run:
    """A run directory's tables; `path` is None for a bare edge file."""

    path: Path | None
    edges: pd.DataFrame
    features: pd.DataFrame
    manifest: dict


# ---------------------------------------------------------------- atomic writes

def check_target(out: Path, force: bool) -> None:
    """Refuse early (before any work) to overwrite a run without --force."""
    out = Path(out)
    if out.exists() and not force:
        raise BadInput(f"{out} already exists: choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} exists and is not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise BadInput(f"cannot write into {parent}: choose a writable --out")


@contextlib.contextmanager
def staged_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory that replaces `out` only if the block succeeds."""
    out = Path(out)
    check_target(out, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "run")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed onto it on success."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror}; choose a writable location") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_file(out: Path, suffixes: tuple[str, ...]) -> Path:
    """Refuse, before any work, an output file of the wrong kind or in a missing folder."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise BadInput(f"--out must be a {' or '.join(suffixes)} file, got {out}")
    if not out.parent.exists():
        raise BadInput(f"{out.parent} does not exist: create it or choose another --out")
    return out


def write_text(path: Path, text: str) -> None:
    with staged_file(path) as tmp:
        tmp.write_text(text)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- tables

def edges_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Cast an edge table to the schema's dtypes and column order."""
    cols = list(EDGE_COLUMNS) + [c for c in EDGE_EXTRA_COLUMNS if c in df.columns]
    out = df[cols].copy()
    for col in cols:
        dtype = EDGE_COLUMNS.get(col) or EDGE_EXTRA_COLUMNS[col]
        out[col] = out[col].astype(dtype)
    return out.reset_index(drop=True)


def features_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df[list(FEATURE_COLUMNS)].copy()
    for col, dtype in FEATURE_COLUMNS.items():
        out[col] = out[col].astype(dtype)
    return out.sort_values(["sae", "index"], kind="stable").reset_index(drop=True)


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
        rows.append({"id": fid, "sae": source, "layer": -1 if layer is None else layer, "index": index,
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


# ---------------------------------------------------------------- write / read

def write_run(out: Path, edges: pd.DataFrame, features: pd.DataFrame, manifest: dict,
              force: bool = False, csv: bool = False) -> Path:
    """Write a complete run directory atomically; returns its path."""
    edges, features = edges_frame(edges), features_frame(features)
    with staged_dir(out, force) as tmp:
        _write_tables(tmp, edges, features, manifest, csv)
    return Path(out)


def _write_tables(d: Path, edges, features, manifest, csv: bool) -> None:
    edges.to_parquet(d / EDGES, index=False)
    features.to_parquet(d / FEATURES, index=False)
    files = [EDGES, FEATURES]
    if csv:
        edges.to_csv(d / "edges.csv", index=False)
        files.append("edges.csv")
    m = dict(manifest)
    m["featgraph_version"] = __version__
    m["rows"] = {"edges": int(len(edges)), "features": int(len(features))}
    m["files"] = {f: {"sha256": sha256(d / f), "bytes": (d / f).stat().st_size} for f in files}
    (d / MANIFEST).write_text(json.dumps(m, indent=2, default=_json_default) + "\n")


def update_features(run: Run, features: pd.DataFrame, manifest_extra: dict) -> None:
    """Replace a run's features.parquet (and refresh the manifest) in place, atomically per file."""
    features = features_frame(features)
    with staged_file(run.path / FEATURES) as tmp:
        features.to_parquet(tmp, index=False)
    m = dict(run.manifest)
    m.update(manifest_extra)
    m.setdefault("files", {})[FEATURES] = {"sha256": sha256(run.path / FEATURES), "bytes": (run.path / FEATURES).stat().st_size}
    m.setdefault("rows", {})["features"] = int(len(features))
    write_text(run.path / MANIFEST, json.dumps(m, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def read_edge_file(path: Path) -> pd.DataFrame:
    """An edge table in the SPEC schema from Parquet or CSV, validated and completed."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path} not found: pass a run directory or an edge table (.parquet or .csv)")
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path)
        elif path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise BadInput(f"{path}: edge tables must be .parquet or .csv")
    except BadInput:
        raise
    except Exception as e:
        raise BadInput(f"cannot read {path} ({e.__class__.__name__}): is it a valid Parquet/CSV file?") from None
    missing = [c for c in EDGE_REQUIRED if c not in df.columns]
    if missing:
        raise BadInput(f"{path} lacks column(s) {', '.join(missing)}: an edge table needs {', '.join(EDGE_REQUIRED)}")
    if df.empty:
        raise BadInput(f"{path} has no edges")
    try:
        df["circuit"] = df["circuit"].map(normalise_circuit)
    except ValueError as e:
        raise BadInput(f"{path}: circuit {e.args[0]!r} is not QK or OV") from None
    if df["weight"].isna().any():
        raise BadInput(f"{path}: column weight has missing values")
    for end in ("src", "dst"):
        col = f"{end}_index"
        if col not in df.columns or df[col].isna().any():
            try:
                df[col] = [parse_feature_id(str(f))[2] for f in df[end]]
            except ValueError as e:
                raise BadInput(f"{path}: {end} id {e.args[0]!r} is not MODEL/SOURCE/INDEX; add a {col} column") from None
    if "kv_head" not in df.columns:
        df["kv_head"] = -1  # unknown for tables made elsewhere
    df["kv_head"] = df["kv_head"].fillna(-1)
    if "rank" not in df.columns or df["rank"].isna().any():
        df = rank_edges(df.assign(rank=0))
    try:
        return edges_frame(df)
    except (ValueError, TypeError) as e:
        raise BadInput(f"{path}: a column has the wrong type ({e}); see the schema in the README") from None


def read_run(path: Path) -> Run:
    """A run directory, or a bare edge table (features derived from ids)."""
    path = Path(path)
    if path.is_file():
        edges = read_edge_file(path)
        return Run(None, edges, features_from_edges(edges), {"source": {"edge_file": str(path)}})
    if not path.is_dir():
        raise BadInput(f"{path} not found: pass a run directory made by `featgraph extract` or `featgraph import`")
    if not (path / EDGES).is_file():
        raise BadInput(f"{path} is not a run directory (no {EDGES}): make one with `featgraph extract` or `featgraph import`")
    try:
        edges = pd.read_parquet(path / EDGES)
        features = pd.read_parquet(path / FEATURES) if (path / FEATURES).is_file() else features_from_edges(edges)
        manifest = json.loads((path / MANIFEST).read_text()) if (path / MANIFEST).is_file() else {}
    except Exception as e:
        raise FeatgraphError(f"cannot read run {path} ({e.__class__.__name__}); re-create it with `featgraph extract`") from None
    if edges.empty:
        raise BadInput(f"{path} has no edges: re-run extract with a lower --min-abs or a larger --top-k")
    return Run(path, edges, features, manifest)


def import_edges(edge_file: Path, out: Path, force: bool = False) -> Path:
    """`featgraph import`: a run directory from an edge table computed elsewhere."""
    check_target(Path(out), force)
    edges = read_edge_file(Path(edge_file))
    features = features_from_edges(edges)
    manifest = {"source": {"imported_from": str(Path(edge_file).resolve())}, "conventions": "unknown (imported)"}
    return write_run(Path(out), edges, features, manifest, force=force)

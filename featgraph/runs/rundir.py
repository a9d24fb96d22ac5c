"""The run directory on disk (docs/run-directory.md): written whole or not at all, read back checked.

A run holds `edges.parquet`, `features.parquet` and `manifest.json`; later
stages add files (`tetrads.parquet`, the graph store). Writes go through
`featgraph.runs.files` (staged, renamed into place). Reading checks the files against
the checksums the manifest recorded.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featgraph import __version__
from featgraph.core.schema import (
    CIRCUITS,
    EDGE_REQUIRED,
    contiguous,
    edges_frame,
    features_frame,
    features_from_edges,
    parse_feature_id,
    rank_edges,
    upgrade_features,
)
from featgraph.errors import BadInput, FeatgraphError, FeatgraphWarning
from featgraph.runs.files import sha256, staged_dir, staged_file, write_text
from featgraph.runs.graphs import GRAPHS_DIR
from featgraph.runs.manifest import ConventionsRecord, Manifest, new_run_id

EDGES = "edges.parquet"
FEATURES = "features.parquet"
MANIFEST = "manifest.json"
TETRADS = "tetrads.parquet"


@dataclass(frozen=True)
class Tables:
    """What a run directory (or a bare edge file) holds; `path` is None for an edge file."""

    path: Path | None
    edges: pd.DataFrame
    features: pd.DataFrame
    manifest: Manifest


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- write

def write_run(out: Path, edges: pd.DataFrame, features: pd.DataFrame, manifest: Manifest,
              force: bool = False, csv: bool = False) -> Path:
    """Write a complete run directory atomically; returns its path."""
    out = Path(out)
    edges, features = edges_frame(edges), features_frame(features)
    if manifest.run_id is None:
        manifest = manifest.replace(run_id=new_run_id(out.name))
    manifest = manifest.anchored(out)
    with staged_dir(out, force, kind="run") as tmp:
        edges.to_parquet(tmp / EDGES, index=False)
        features.to_parquet(tmp / FEATURES, index=False)
        names = [EDGES, FEATURES]
        if csv:
            edges.to_csv(tmp / "edges.csv", index=False)
            names.append("edges.csv")
        m = manifest.replace(
            featgraph_version=__version__, created=manifest.created or now(),
            rows={"edges": len(edges), "features": len(features)},
            files={f: _file_entry(tmp / f) for f in names},
        )
        (tmp / MANIFEST).write_text(m.to_json(), encoding="utf-8")
    return out


def write_in_place(directory: Path, edges: pd.DataFrame, features: pd.DataFrame, manifest: Manifest) -> Manifest:
    """Replace the tables and manifest of a directory that also holds other things (an atlas and its layers).

    Each file is written under a temporary name and renamed; the manifest, which records the tables' checksums,
    goes last, so an interruption leaves at worst tables newer than the manifest (opening warns; the next
    rebuild repairs it).
    """
    directory = Path(directory)
    manifest = manifest.anchored(directory)
    edges, features = edges_frame(edges), features_frame(features)
    for name, table in ((EDGES, edges), (FEATURES, features)):
        with staged_file(directory / name) as tmp:
            table.to_parquet(tmp, index=False)
    m = manifest.replace(featgraph_version=__version__, created=manifest.created or now(),
                         rows={"edges": len(edges), "features": len(features)},
                         files={f: _file_entry(directory / f) for f in (EDGES, FEATURES)})
    write_text(directory / MANIFEST, m.to_json())
    return m


def _file_entry(path: Path) -> dict:
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


def update_features(directory: Path, manifest: Manifest, features: pd.DataFrame, labels: dict) -> Manifest:
    """Replace a run's features.parquet and record `labels` in its manifest (each file atomically)."""
    directory = Path(directory)
    features = features_frame(features)
    with staged_file(directory / FEATURES) as tmp:
        features.to_parquet(tmp, index=False)
    m = manifest.replace(
        labels=labels,
        files=dict(manifest.files) | {FEATURES: _file_entry(directory / FEATURES)},
        rows=dict(manifest.rows) | {"features": len(features)},
    )
    write_text(directory / MANIFEST, m.to_json())
    return m


def record_store(directory: Path, manifest: Manifest, name: str, entry: dict) -> Manifest:
    """Note in the run's manifest that it was loaded into store `name` (so later label changes can say it is stale)."""
    m = manifest.replace(stores=dict(manifest.stores) | {name: entry})
    write_text(Path(directory) / MANIFEST, m.to_json())
    return m


# ---------------------------------------------------------------- read

def read_tables(path: Path, verify: bool = True) -> Tables:
    """A run directory, or a bare edge table (features derived from ids).

    With `verify`, a file whose sha256 differs from the manifest's record is reported
    (a FeatgraphWarning): someone edited the run after featgraph wrote it.
    """
    path = Path(path)
    if path.is_file():
        edges = read_edge_file(path)
        return Tables(None, edges, features_from_edges(edges), Manifest(source={"edge_file": str(path)}))
    if not path.is_dir():
        raise BadInput(f"{path} not found: pass a run directory made by `featgraph extract` or `featgraph import`")
    if not (path / EDGES).is_file():
        from featgraph.runs.files import marker_kind

        if marker_kind(path) == "atlas":
            raise BadInput(f"{path} is an atlas with no finished layer yet: continue it with `featgraph atlas … --out {path}`")
        raise BadInput(f"{path} is not a run directory (no {EDGES}): make one with `featgraph extract` or `featgraph import`")
    manifest = read_manifest(path)
    gone = [name for name in manifest.files if not (path / name).is_file()]
    if gone:
        raise BadInput(f"{path / gone[0]} is missing: the run's manifest lists it, so the run is incomplete; re-create the "
                       "run (featgraph extract or import), or restore the file")
    if verify:
        for name, entry in manifest.files.items():
            f = path / name
            if f.is_file() and isinstance(entry, dict) and entry.get("sha256") and sha256(f) != entry["sha256"]:
                warnings.warn(f"{f} changed after featgraph wrote it (its sha256 no longer matches the manifest); "
                              "re-create the run if that was not intended", FeatgraphWarning, stacklevel=2)
    try:
        # columns in one chunk each: taking rows of a chunked Arrow column concatenates its chunks every time
        edges = contiguous(pd.read_parquet(path / EDGES), inplace=True)
        features = contiguous(read_features(path / FEATURES), inplace=True) if (path / FEATURES).is_file() else features_from_edges(edges)
    except Exception as e:
        raise FeatgraphError(f"cannot read run {path} ({e.__class__.__name__}); re-create it with `featgraph extract`") from None
    missing = [c for c in EDGE_REQUIRED if c not in edges.columns]
    if missing:
        raise BadInput(f"{path / EDGES} lacks column(s) {', '.join(missing)}: re-create the run with `featgraph extract`")
    if edges.empty and not (path / GRAPHS_DIR).is_dir():  # a run made by importing an attribution graph has none
        raise BadInput(f"{path} has no edges: re-run extract with a lower --min-abs or a larger --top-k")
    return Tables(path, edges, features, manifest)


def read_features(path: Path) -> pd.DataFrame:
    """A features.parquet of any featgraph version, its columns named as FEATURE_COLUMNS (an old file's `index`
    read as `feature_index`; the file itself is left as it is)."""
    return upgrade_features(pd.read_parquet(path))


def read_manifest(path: Path) -> Manifest:
    """A run directory's manifest as it is on disk now (a version-1 run gets a run id derived from its edges)."""
    path = Path(path)
    try:
        raw = json.loads((path / MANIFEST).read_text(encoding="utf-8")) if (path / MANIFEST).is_file() else {}
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {path / MANIFEST} ({e.__class__.__name__}): re-create the run with `featgraph extract`") from None
    manifest = Manifest.from_dict(raw, str(path / MANIFEST))
    if manifest.run_id is None:  # runs made before run ids: derive a stable one from the edge file's checksum
        digest = (manifest.files.get(EDGES) or {}).get("sha256") or sha256(path / EDGES)
        manifest = manifest.replace(run_id=f"{path.name}-{digest[:12]}")
    return manifest.located(path)


def read_edge_file(path: Path) -> pd.DataFrame:
    """An edge table in featgraph's schema from Parquet or CSV, validated and completed.

    Every value is checked before anything is cast (a cast would wrap 2**40 to 0, truncate 1.5 or turn
    1e300 into inf); the first bad one is reported with its 1-based data row and its column.
    """
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
    df = _checked_edges(df.reset_index(drop=True), path)
    if "rank" not in df.columns or df["rank"].isna().any():
        df = rank_edges(df.assign(rank=0))
    return edges_frame(df)


_INT32_MAX = 2**31 - 1
_INT_MAX = 2**53  # larger integers are not exact once read as float64, and no SAE is that wide
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _checked_edges(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """`df` with every column checked (BadInput naming the first bad row and column) and the optional ones completed."""

    def bad(row: int, col: str, what: str) -> BadInput:
        return BadInput(f"{path}: data row {row + 1}, column {col}: {what}")

    def first(mask) -> int | None:
        rows = np.flatnonzero(np.asarray(mask, dtype=bool))
        return int(rows[0]) if len(rows) else None

    def integers(col: str, low: int, high: int, optional: bool = False) -> pd.Series:
        """The column as float64 (exact for these ranges); values missing are allowed only when `optional`."""
        raw = df[col]
        v = pd.to_numeric(raw, errors="coerce").astype("float64")
        a = v.to_numpy()
        ok = (a == np.floor(a)) & (a >= low) & (a <= high)  # False for NaN and ±inf
        if (i := first(~ok & ~(optional & raw.isna().to_numpy()))) is not None:
            span = f"≥ {low}" if high == _INT_MAX else f"from {low} to {high}"
            raise bad(i, col, f"{_shown(raw.iloc[i])} is not an integer {span}")
        return v

    def reals(col: str) -> None:
        raw = df[col]
        v = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
        if (i := first(~(np.abs(v) <= _FLOAT32_MAX))) is not None:  # NaN, ±inf, and what float32 turns into inf
            raise bad(i, col, f"{_shown(raw.iloc[i])} is not a finite number within float32's range")

    circuit = df["circuit"].astype("string").str.strip().str.upper()
    if (i := first(~circuit.isin(CIRCUITS).fillna(False))) is not None:
        raise bad(i, "circuit", f"{_shown(df['circuit'].iloc[i])} is not QK or OV")
    df["circuit"] = circuit.astype(object)
    layer = integers("layer", 0, _INT32_MAX)
    head = integers("head", 0, _INT32_MAX)
    reals("weight")
    if "z" in df.columns:
        reals("z")
    if "kv_head" in df.columns:
        integers("kv_head", -1, _INT32_MAX, optional=True)
        df["kv_head"] = df["kv_head"].fillna(-1)
    else:
        df["kv_head"] = -1  # unknown for tables made elsewhere
    if "rank" in df.columns:
        integers("rank", 1, _INT_MAX, optional=True)
    for end in ("src", "dst"):
        col = f"{end}_index"
        parsed = [_id_index(f) for f in df[end]]
        if (i := first([p is None for p in parsed])) is not None:
            raise bad(i, end, f"{_shown(df[end].iloc[i])} is not MODEL/SOURCE/INDEX (e.g. gemma-2-2b/12-gemmascope-res-16k/8517)")
        from_id = pd.Series(parsed, dtype="int64")
        if col in df.columns:
            given = integers(col, 0, _INT_MAX, optional=True)
            if (i := first(given.notna() & (given != from_id))) is not None:
                raise bad(i, col, f"{_shown(df[col].iloc[i])} disagrees with the index {parsed[i]} in {end} {df[end].iloc[i]!r}")
        df[col] = from_id
    keys = pd.DataFrame({"layer": layer, "head": head, "circuit": df["circuit"], "src": df["src"], "dst": df["dst"]})
    dup = keys.duplicated(keep=False).to_numpy()
    if (i := first(dup)) is not None:
        twins = np.flatnonzero(dup & (keys == keys.iloc[i]).all(axis=1).to_numpy())
        j = int(twins[1])
        w = pd.to_numeric(df["weight"]).to_numpy()
        signs = " with opposite signs" if np.sign(w[i]) != np.sign(w[j]) else ""
        raise BadInput(f"{path}: data rows {i + 1} and {j + 1} are the same edge{signs} (layer {int(layer[i])}, head "
                       f"{int(head[i])}, {df['circuit'].iloc[i]}, {df['src'].iloc[i]} → {df['dst'].iloc[i]}): keep one")
    return df


def _shown(v: object) -> str:
    """A cell as a message shows it: `nan`, `1.5`, `'x'` — never numpy's `np.float32(nan)`."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _id_index(fid: object) -> int | None:
    try:
        return parse_feature_id(fid)[2] if isinstance(fid, str) else None
    except ValueError:
        return None


def import_edges(edge_file: Path, out: Path, force: bool = False) -> Path:
    """A run directory from an edge table computed elsewhere."""
    from featgraph.runs.files import check_target

    check_target(Path(out), force, kind="run")
    edges = read_edge_file(Path(edge_file))
    features = features_from_edges(edges)
    manifest = Manifest(command="import", source={"imported_from": str(Path(edge_file).resolve())},
                        conventions=ConventionsRecord.of("unknown (imported)"))
    return write_run(Path(out), edges, features, manifest, force=force)

"""The atlas directory on disk (docs/run-directory.md, "The atlas"): its layers' runs and the combined run.

`DIR/layers/L{layer}` is each layer's `extract` run; `DIR`'s own edges.parquet, features.parquet and manifest.json
(command "atlas") are rebuilt from the finished layers, so `open_run(DIR)` is one run over every layer. This module
reads and writes that layout; `featgraph.api.multilayer` computes the layers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from featgraph.core.schema import CIRCUITS
from featgraph.errors import BadInput, FeatgraphError
from featgraph.runs.manifest import ConventionsRecord, Manifest, SelectionRecord

KIND = "atlas"
LAYERS_DIR = "layers"


def layer_dir(out: str | Path, layer: int) -> Path:
    """Where layer `layer`'s run lives inside an atlas."""
    return Path(out) / LAYERS_DIR / f"L{int(layer)}"


def finished(out: Path) -> dict[int, Manifest]:
    """The layers whose runs are complete (a run directory appears whole or not at all): layer -> manifest."""
    from featgraph.runs import rundir

    found = {}
    for d in sorted((out / LAYERS_DIR).glob("L*")):
        if d.is_dir() and d.name[1:].isdigit() and (d / rundir.MANIFEST).is_file() and (d / rundir.EDGES).is_file():
            found[int(d.name[1:])] = rundir.read_manifest(d)
    return dict(sorted(found.items()))


def create(out: Path) -> None:
    """The atlas folder with its marker, appearing together (a folder without the marker would be refused later)."""
    import uuid

    from featgraph.runs.files import write_marker

    tmp = out.parent / f".{out.name}.new-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write_marker(tmp, KIND)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(out: Path) -> None:
    """Staging folders killed runs left in layers/ (`.L3.tmp-*`, `.L3.old-*`), and the resumable parts of layers
    that are finished (`.L3.partial` beside a complete `L3`); the caller holds the atlas' lock."""
    from featgraph.runs.files import remove_stale

    layers = out / LAYERS_DIR
    done = finished(out)
    remove_stale(p for p in layers.glob(".L*") if ".tmp-" in p.name or ".old-" in p.name or ".new-" in p.name
                 or (p.name.endswith(".partial") and p.name[2:-8].isdigit() and int(p.name[2:-8]) in done))


def clear(out: Path) -> None:
    """Start an atlas over (force): its layers and combined tables go; the folder and its marker stay."""
    from featgraph.runs import rundir
    from featgraph.runs.files import DB_NAME

    layers = out / LAYERS_DIR
    try:
        if layers.is_symlink() or layers.is_file():
            layers.unlink()  # a link goes, never what it points to
        elif layers.exists():
            shutil.rmtree(layers)
    except OSError as e:
        raise FeatgraphError(f"cannot remove {layers} to start the atlas over: {e.strerror}") from None
    for name in (rundir.EDGES, rundir.FEATURES, rundir.MANIFEST, rundir.TETRADS):
        (out / name).unlink(missing_ok=True)
    for p in out.glob(DB_NAME + "*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def relabel(out: Path, chosen: pd.DataFrame, record: dict, counts: dict) -> Manifest:
    """Labels (one per feature: load.neuronpedia.choose) attached to every layer's run that they cover, then the
    combined tables rebuilt, so the atlas and its layers agree and a later rebuild keeps the labels. `counts`:
    annotate.merge's over the combined features."""
    from featgraph.core import annotate
    from featgraph.runs import rundir

    done = finished(out)
    for L in done:
        d = layer_dir(out, L)
        try:
            feats, layer_counts = annotate.merge(rundir.read_features(d / rundir.FEATURES), chosen)
        except BadInput:
            continue  # nothing for this layer's SAEs: it keeps what it had
        rundir.update_features(d, rundir.read_manifest(d), feats, record | layer_counts.__dict__)
    old = rundir.read_manifest(out)
    requested = (old.extra.get("atlas") or {}).get("requested") or {}
    combine(out, finished(out), old.circuits or CIRCUITS, requested, labels=record | counts)
    return rundir.read_manifest(out)


def combine(out: Path, done: dict[int, Manifest], circuits: Sequence[str], requested: dict,
            labels: dict | None = None, engine: dict | None = None) -> None:
    """Rebuild DIR's edges.parquet, features.parquet and manifest.json from the finished layers' runs.

    engine: what computed the layers of this call ({"name": "process"}, or Ray's cluster: featgraph.api.ray_atlas);
    None keeps the record there is. Each layer's part records its own device and engine."""
    from featgraph.runs import rundir
    from featgraph.runs.manifest import new_run_id

    if not done:
        return
    edges = pd.concat([pd.read_parquet(layer_dir(out, L) / rundir.EDGES) for L in done], ignore_index=True)
    feats = pd.concat([rundir.read_features(layer_dir(out, L) / rundir.FEATURES) for L in done], ignore_index=True)
    # One node per feature id: an SAE's features appear in two layers' runs (output of L, input of L+1).
    feats = feats.assign(_has=feats["description"].notna()).sort_values("_has", ascending=False, kind="stable")
    feats = feats.drop_duplicates("id").drop(columns="_has")
    try:
        old = rundir.read_manifest(out) if (out / rundir.MANIFEST).is_file() else None
    except BadInput:
        old = None
    first = next(iter(done.values()))
    parts = {str(L): {"path": f"{LAYERS_DIR}/L{L}", "run_id": m.run_id, "created": m.created,
                      "sae_in": (m.sae_in or {}).get("neuronpedia_id"), "sae_out": (m.sae_out or {}).get("neuronpedia_id"),
                      "heads": list(m.heads), "rows": dict(m.rows), "labels": (m.labels or {}).get("labelled"),
                      "device": m.device, "engine": (m.extra.get("engine") or {}).get("name", "process")}
             for L, m in done.items()}
    model = {k: v for k, v in (first.model or {}).items() if k != "layer"}
    manifest = Manifest(
        run_id=(old.run_id if old is not None else None) or new_run_id(out.name),
        command="atlas",
        created=old.created if old is not None else None,
        model=model,
        heads=tuple(sorted({h for m in done.values() for h in m.heads})),
        circuits=tuple(circuits),
        conventions=ConventionsRecord.of("per layer: layers/L{layer}/manifest.json"),
        selection=SelectionRecord({k: (first.selection or {}).get(k) for k in ("top_k", "min_abs", "per_source_k", "order", "values")}),
        device=first.device,
        stores=dict(old.stores) if old is not None else {},
        labels=_label_record(labels or (old.labels if old is not None else None), feats),
        extra={"layers": sorted(done), "atlas": {"requested": requested, "parts": parts, "engine": engine or (
            ((old.extra.get("atlas") or {}).get("engine") if old is not None else None) or {"name": "process"})}},
    )
    rundir.write_in_place(out, edges, feats, manifest)


def _label_record(record: dict | None, feats: pd.DataFrame) -> dict | None:
    """The atlas' `labels` entry: the last `labels` call's sources, rule and counts, with `features` and `labelled`
    counted again over today's combined features (layers added since were labelled by their own runs)."""
    if not record:
        return None
    return dict(record) | {"features": len(feats), "labelled": int(feats["description"].notna().sum())}

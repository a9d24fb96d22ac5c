"""A run's manifest: what was computed, from what, how — typed, versioned, no secrets.

`format_version` 2 is written today; a manifest without one is a version-1 run
(written before the field existed) and reads the same way. Keys this version
does not know are kept in `extra` and written back unchanged, so a newer
featgraph's runs survive a round trip through an older one. See
docs/run-directory.md for every field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featgraph.errors import BadInput

FORMAT_VERSION = 2


class ConventionsRecord(dict):
    """`manifest.conventions`: the conventions behind a run's raw values, as manifest.json stores them (a dict, so
    `conv["rope"]["theta"]` reads as before) with typed accessors. A run that records none (imported: the sentence
    `unknown (imported)`; an atlas: `per layer: …`) is an empty record with `known` False and that sentence in `note`."""

    note: str | None = None

    @classmethod
    def of(cls, value: object) -> ConventionsRecord:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            record = cls()
            record.note = value
            return record
        return cls(value if isinstance(value, Mapping) else {})

    @property
    def known(self) -> bool:
        return self.note is None

    @property
    def ov_target(self) -> str:
        """What the output SAE reads: `resid` or `attn`."""
        return str(self.get("ov_target") or "resid")

    @property
    def attn_scale(self) -> float | None:
        """The QK factor applied (1/sqrt(query_pre_attn_scalar)), or None (raw, as the post)."""
        v = self.get("attn_scale")
        return None if v is None else float(v)

    @property
    def rope_offset(self) -> int:
        return int((self.get("rope") or {}).get("offset", 0) or 0)

    @property
    def rope_theta(self) -> float | None:
        v = (self.get("rope") or {}).get("theta")
        return None if v is None else float(v)

    @property
    def qk_norm(self) -> bool:
        """True for families with per-head query/key norms (Gemma 3)."""
        return "qk_norm" in self

    def stored(self) -> dict | str:
        """As manifest.json holds it (the sentence of a run that records none)."""
        return self.note if self.note is not None and not self else dict(self)


class SelectionRecord(dict):
    """`manifest.selection`: how the edges were chosen, as manifest.json stores it (a dict), with typed accessors."""

    @property
    def top_k(self) -> int | None:
        v = self.get("top_k")
        return None if v is None else int(v)

    @property
    def min_abs(self) -> float | None:
        v = self.get("min_abs")
        return None if v is None else float(v)

    @property
    def per_source_k(self) -> int | None:
        v = self.get("per_source_k")
        return None if v is None else int(v)

    @property
    def precision(self) -> str | None:
        v = self.get("precision")
        return None if v is None else str(v)


@dataclass(frozen=True)
class Manifest:
    """The typed contents of `manifest.json`.

    model: {ref, revision, neuronpedia_id, id_source, layer, config}; sae_in / sae_out:
    {ref, revision, sha256, neuronpedia_id, id_source, layer, d_in, d_sae, …}; stats:
    {"HEAD/CIRCUIT": {mean, std, n_src, n_dst}}; files: {name: {sha256, bytes}}; stores: where the run
    was loaded outside its directory ({"neo4j": {uri (no credentials), database, run, loaded}}).
    """

    format_version: int = FORMAT_VERSION
    run_id: str | None = None
    featgraph_version: str | None = None
    command: str | None = None
    created: str | None = None
    model: Mapping[str, Any] | None = None
    sae_in: Mapping[str, Any] | None = None
    sae_out: Mapping[str, Any] | None = None
    heads: tuple[int, ...] = ()
    circuits: tuple[str, ...] = ()
    conventions: ConventionsRecord | None = None
    selection: SelectionRecord | None = None
    device: str | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, Any] | None = None
    source: Mapping[str, Any] | None = None
    rows: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[str, Any] = field(default_factory=dict)
    stores: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Typed records whatever was passed (a dict, or a sentence for conventions); stored back as they came.
        if self.conventions is not None and not isinstance(self.conventions, ConventionsRecord):
            object.__setattr__(self, "conventions", ConventionsRecord.of(self.conventions))
        if self.selection is not None and not isinstance(self.selection, SelectionRecord):
            object.__setattr__(self, "selection", SelectionRecord(self.selection))

    @classmethod
    def from_dict(cls, d: object, where: str = "manifest.json") -> Manifest:
        if not isinstance(d, dict):
            raise BadInput(f"{where} holds a {type(d).__name__}, not an object: re-create the run with `featgraph extract`")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "format_version"}
        kw: dict[str, Any] = {k: d[k] for k in known if k in d}
        try:
            version = int(d.get("format_version", 1))
            kw["heads"] = tuple(int(h) for h in (d.get("heads") or ()))
            kw["circuits"] = tuple(str(c) for c in (d.get("circuits") or ()))
        except (TypeError, ValueError):
            raise BadInput(f"{where}: format_version, heads or circuits has the wrong type; re-create the run") from None
        for name in ("model", "sae_in", "sae_out", "conventions", "selection", "labels", "source"):
            value = kw.get(name)
            # Imported runs of version 1 recorded their conventions as a sentence.
            if value is not None and not isinstance(value, dict) and not (name == "conventions" and isinstance(value, str)):
                _bad(where, name)
        for name in ("stats", "rows", "files", "stores"):
            if not isinstance(kw.get(name, {}), dict):
                _bad(where, name)
        extra = {k: v for k, v in d.items() if k not in known and k != "format_version"}
        return cls(format_version=version, extra=extra, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d["heads"], d["circuits"] = list(self.heads), list(self.circuits)
        if self.conventions is not None:
            d["conventions"] = self.conventions.stored()
        if self.selection is not None:
            d["selection"] = dict(self.selection)
        return d | dict(self.extra)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    @property
    def has_weights(self) -> bool:
        """True when the run records the model and input SAE it was computed from (an extracted run)."""
        return bool((self.model or {}).get("ref")) and bool((self.sae_in or {}).get("ref"))

    @property
    def layer(self) -> int | None:
        layer = (self.model or {}).get("layer")
        return None if layer is None else int(layer)

    def anchored(self, run_dir: Path) -> Manifest:
        """This manifest as written into `run_dir`: each local model/SAE `ref` (a path that exists now, typed
        relative to the working directory or not) becomes its absolute resolved path, and `ref_from_run` records
        it relative to the run folder, so the run reloads its weights from any directory and after a move of the
        folder tree that holds both. Hub ids and objects in memory are left as they are."""
        base = Path(os.path.abspath(run_dir))
        changes = {}
        for name in REF_ENTRIES:
            entry = getattr(self, name)
            ref = (entry or {}).get("ref")
            if not isinstance(ref, str) or not ref or not Path(ref).expanduser().exists():
                continue
            path = Path(ref).expanduser().resolve()
            changes[name] = dict(entry or {}) | {"ref": str(path), "ref_from_run": os.path.relpath(path, base)}
        return self.replace(**changes) if changes else self

    def located(self, run_dir: Path) -> Manifest:
        """This manifest read from `run_dir`: a local `ref` that no longer exists where it was recorded is found
        again through `ref_from_run` (the folder moved with its inputs). Anything else is left as recorded."""
        changes = {}
        for name in REF_ENTRIES:
            entry = getattr(self, name) or {}
            ref, rel = entry.get("ref"), entry.get("ref_from_run")
            if not isinstance(ref, str) or not isinstance(rel, str) or Path(ref).expanduser().exists():
                continue
            found = Path(run_dir) / rel
            if found.exists():
                changes[name] = dict(entry) | {"ref": str(found.resolve())}
        return self.replace(**changes) if changes else self


REF_ENTRIES = ("model", "sae_in", "sae_out")


def new_run_id(name: str) -> str:
    """A run's identity in shared stores: its directory name plus a random suffix, unique per run made."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


def _bad(where: str, name: str) -> None:
    raise BadInput(f"{where}: {name!r} has the wrong type; re-create the run with `featgraph extract`")


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(type(o))

"""Gemma Scope JumpReLU SAEs from `params.npz` (local, Hub path or canonical id).

Keys (docs/formats.md): W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae],
b_dec [d_in], threshold [d_sae]. Only the arrays a caller asks for are read
(an input SAE needs the decoder, an output SAE the encoder); every key's shape
is checked from the npy headers without reading the data.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featgraph.errors import BadInput
from featgraph.files import sha256
from featgraph.load import hub
from featgraph.weights import SAE

KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
PARAMS = "params.npz"

# SAELens' `pretrained_saes.yaml` (releases gemma-scope-2b-pt-{res,att}-canonical)
# defines "canonical" as the average_l0 closest to 100. These are the entries
# we have checked; anything else is resolved by that rule over the repo listing.
KNOWN_CANONICAL: dict[tuple[str, int, str], int] = {
    ("res", 12, "16k"): 82,
    ("res", 13, "16k"): 84,
    ("att", 13, "16k"): 92,
}
CANONICAL_RELEASES = {
    "gemma-scope-2b-pt-res-canonical": ("google/gemma-scope-2b-pt-res", "res"),
    "gemma-scope-2b-pt-att-canonical": ("google/gemma-scope-2b-pt-att", "att"),
    "gemma-scope-2b-pt-mlp-canonical": ("google/gemma-scope-2b-pt-mlp", "mlp"),
}
_PATH_RE = re.compile(r"gemma-scope-2b-pt-(?P<kind>res|att|mlp|transcoders)\b.*?layer_(?P<layer>\d+)/width_(?P<width>\w+?)/")
_CANON_RE = re.compile(r"^layer_(?P<layer>\d+)/width_(?P<width>\w+)/canonical$")
_L0_RE = re.compile(r"average_l0_(\d+)/params\.npz$")


@dataclass(frozen=True)
class SAERef:
    """A resolved SAE reference: a local file, or a Hub repo + file."""

    text: str
    path: Path | None = None
    repo: hub.HubRef | None = None
    filename: str | None = None
    canonical_rule: str | None = None

    def describe(self) -> dict:
        d = {"ref": self.text}
        if self.repo is not None:
            d.update(repo=self.repo.repo_id, file=self.filename, requested_revision=self.repo.revision)
        if self.canonical_rule:
            d["canonical"] = self.canonical_rule
        return d


def resolve(ref: str) -> SAERef:
    """Turn a path, Hub path or SAELens-style canonical id into an SAERef."""
    p = Path(ref).expanduser()
    if p.exists():
        if p.is_dir():
            p = p / PARAMS
            if not p.is_file():
                raise BadInput(f"SAE directory {ref} has no {PARAMS}")
        return SAERef(ref, path=p)
    head, _, rest = ref.partition("/")
    if head in CANONICAL_RELEASES:
        return _resolve_canonical(ref, head, rest)
    parts = ref.split("/")
    if ref.startswith((".", "/", "~")) or len(parts) < 3:
        raise BadInput(
            f"SAE {ref!r} not found: pass a params.npz, a Hub path like google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82, "
            "or a canonical id like gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical"
        )
    repo = hub.HubRef.parse("/".join(parts[:2]))
    sub = "/".join(parts[2:])
    filename = sub if sub.endswith(".npz") else f"{sub.rstrip('/')}/{PARAMS}"
    return SAERef(ref, repo=repo, filename=filename)


def _resolve_canonical(ref: str, release: str, sae_id: str) -> SAERef:
    m = _CANON_RE.match(sae_id)
    if not m:
        raise BadInput(f"canonical SAE id {ref!r} should look like {release}/layer_12/width_16k/canonical")
    repo_id, kind = CANONICAL_RELEASES[release]
    layer, width = int(m["layer"]), m["width"]
    l0 = KNOWN_CANONICAL.get((kind, layer, width))
    rule = "featgraph table (from SAELens pretrained_saes.yaml)"
    if l0 is None:
        prefix = f"layer_{layer}/width_{width}/"
        l0s = sorted(int(mm.group(1)) for f in hub.list_files(hub.HubRef(repo_id), prefix) if (mm := _L0_RE.search(f)))
        if not l0s:
            raise BadInput(f"{repo_id} has no SAE for layer {layer} at width {width}")
        l0 = min(l0s, key=lambda v: (abs(v - 100), v))
        rule = "average_l0 closest to 100 in the Hub listing (SAELens' definition of canonical)"
    filename = f"layer_{layer}/width_{width}/average_l0_{l0}/{PARAMS}"
    return SAERef(ref, repo=hub.HubRef(repo_id), filename=filename, canonical_rule=rule)


def neuronpedia_source(text: str) -> tuple[str | None, int | None]:
    """Neuronpedia source id and layer implied by a Gemma Scope path, if any."""
    m = _PATH_RE.search(text.replace("\\", "/"))
    if not m:
        return None, None
    kind = {"transcoders": "transcoder"}.get(m["kind"], m["kind"])
    return f"{m['layer']}-gemmascope-{kind}-{m['width']}", int(m["layer"])


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an .npz, read from the npy headers only."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, _ = read(fh)
                shapes[name[:-4]] = tuple(shape)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise BadInput(f"{path} is not a readable .npz ({e.__class__.__name__}): re-download it") from None
    return shapes


def load(ref: str | SAERef, parts: tuple[str, ...] = KEYS, expect_d_in: int | None = None, role: str = "SAE") -> SAE:
    """Load the arrays `parts` of an SAE after checking every key and shape."""
    r = ref if isinstance(ref, SAERef) else resolve(ref)
    path = r.path if r.path is not None else hub.download(r.repo, r.filename)
    shapes = npz_shapes(path)
    missing = [k for k in KEYS if k not in shapes]
    if missing:
        raise BadInput(f"{role} {r.text}: params.npz lacks {', '.join(missing)} (Gemma Scope files have {', '.join(KEYS)})")
    d_in, d_sae = shapes["W_enc"] if len(shapes["W_enc"]) == 2 else (None, None)
    want = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,), "threshold": (d_sae,)}
    for k, shape in want.items():
        if d_in is None or shapes[k] != shape:
            raise BadInput(f"{role} {r.text}: {k} has shape {list(shapes[k])}, expected {list(shape)} for W_enc {list(shapes['W_enc'])}")
    if expect_d_in is not None and d_in != expect_d_in:
        raise BadInput(f"{role} {r.text} reads vectors of size {d_in} but the model's d_model is {expect_d_in}: pick an SAE of this model")
    arrays = {}
    try:
        with np.load(path) as npz:
            for k in parts:
                arrays[k] = torch.from_numpy(np.ascontiguousarray(npz[k], dtype=np.float32))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise BadInput(f"{role} {r.text}: cannot read {path} ({e.__class__.__name__}); the file may be corrupt, re-download it") from None
    for k, a in arrays.items():
        if not torch.isfinite(a).all():
            raise BadInput(f"{role} {r.text}: {k} has NaN or infinite values")
    np_id, layer = neuronpedia_source(r.filename or str(path))
    source = r.describe() | {
        "revision": hub.snapshot_revision(path) if r.repo else None,
        "sha256": sha256(path),
        "neuronpedia_id": np_id,
        "layer": layer,
        "d_in": d_in,
        "d_sae": d_sae,
    }
    return SAE(d_in=d_in, d_sae=d_sae, source=source, **arrays)

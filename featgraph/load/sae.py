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

# The average_l0 of the SAE Neuronpedia hosts under the plain id `{layer}-gemmascope-{kind}-{width}`, per layer
# 0..25, from SAELens' `pretrained_saes.yaml` (releases gemma-scope-2b-pt-{res,att,mlp}-canonical and
# gemma-scope-2b-pt-transcoders). Every other L0 is named `…__l0-{X}` there (hosted for a few residual SAEs
# only), so a path's L0 decides which name is right: the plain name would attach another SAE's labels.
_CANONICAL_BY_LAYER: dict[tuple[str, str], tuple[int, ...]] = {
    ("res", "16k"): (105, 102, 141, 59, 124, 68, 70, 69, 71, 73, 77, 80, 82, 84, 84, 78, 78, 77, 74, 73, 71, 70, 72, 75, 73, 116),
    ("res", "65k"): (73, 121, 77, 89, 89, 105, 107, 107, 111, 118, 128, 70, 72, 75, 73, 127, 128, 125, 116, 115, 114, 111, 116, 123, 124, 93),
    ("att", "16k"): (104, 79, 93, 117, 116, 135, 61, 99, 129, 127, 70, 80, 85, 92, 71, 98, 71, 79, 72, 122, 62, 65, 106, 73, 96, 77),
    ("att", "65k"): (75, 98, 125, 83, 87, 99, 112, 96, 112, 107, 67, 75, 79, 87, 66, 90, 129, 70, 123, 106, 102, 118, 112, 140, 77, 63),
    ("mlp", "16k"): (119, 105, 95, 95, 85, 114, 133, 60, 136, 88, 110, 98, 108, 112, 97, 80, 72, 68, 106, 109, 109, 113, 121, 128, 73, 126),
    ("mlp", "65k"): (72, 127, 134, 68, 66, 86, 101, 115, 110, 77, 95, 88, 96, 98, 89, 72, 66, 136, 88, 88, 88, 86, 92, 102, 128, 107),
    ("transcoders", "16k"): (76, 65, 49, 54, 88, 87, 95, 70, 52, 72, 88, 5, 6, 8, 8, 8, 10, 12, 13, 12, 11, 13, 15, 25, 37, 41),
}
CANONICAL_L0: dict[tuple[str, int, str], int] = {
    (kind, layer, width): l0 for (kind, width), l0s in _CANONICAL_BY_LAYER.items() for layer, l0 in enumerate(l0s)
} | {("res", 5, "1m"): 114, ("res", 12, "1m"): 107, ("res", 19, "1m"): 88, ("res", 12, "32k"): 76,
     ("res", 12, "262k"): 121, ("res", 12, "524k"): 115}
CANONICAL_RELEASES = {
    "gemma-scope-2b-pt-res-canonical": ("google/gemma-scope-2b-pt-res", "res"),
    "gemma-scope-2b-pt-att-canonical": ("google/gemma-scope-2b-pt-att", "att"),
    "gemma-scope-2b-pt-mlp-canonical": ("google/gemma-scope-2b-pt-mlp", "mlp"),
}
# Gemma Scope's layout (`hf download --local-dir` keeps it; the HF cache adds models--google--gemma-scope-2b-pt-res).
GEMMA_2_2B_D_MODEL = 2304
_KIND_RE = re.compile(r"gemma-scope-2b-pt-(?P<kind>res|att|mlp|transcoders)(?![\w])")
_LAYOUT_RE = re.compile(r"(?:^|/)layer_(?P<layer>\d+)/width_(?P<width>\w+)/average_l0_(?P<l0>\d+)(?:/|$)")
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
    l0 = CANONICAL_L0.get((kind, layer, width))
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


def neuronpedia_source(text: str, d_in: int | None = None, d_model: int | None = None,
                       d_attn: int | None = None) -> tuple[str | None, int | None, str | None]:
    """(Neuronpedia source id, layer, how it was found) implied by a Gemma Scope 2B path; None for what is not.

    The layout `layer_N/width_W/average_l0_X` gives layer, width and L0; `gemma-scope-2b-pt-res|att|mlp`
    in the path before it gives the kind, else d_in does for a Gemma 2 2B (d_model: residual stream,
    n_heads·d_head: attention output). Rules in docs/ids.md.
    """
    text = text.replace("\\", "/")
    m = _LAYOUT_RE.search(text)
    if not m:
        return None, None, None
    layer, width, l0 = int(m["layer"]), m["width"], int(m["l0"])
    before = text[: m.start()]
    release = before.rfind("gemma-scope-")  # the one nearest the layout names it
    k = _KIND_RE.match(before, release) if release >= 0 else None
    if k:
        kind, why = k["kind"], f"{k[0]} in the path"
    elif release >= 0 or d_model != GEMMA_2_2B_D_MODEL:
        return None, layer, None  # another Gemma Scope release, or another model: the 2B table does not apply
    elif d_in == d_model:
        kind, why = "res", "residual stream: d_in = d_model"
    elif d_in is not None and d_in == d_attn:
        kind, why = "att", "attention output: d_in = n_heads·d_head"
    else:
        return None, layer, None
    name = f"{layer}-gemmascope-{'transcoder' if kind == 'transcoders' else kind}-{width}"
    canonical = CANONICAL_L0.get((kind, layer, width))
    if canonical != l0:  # not the SAE Neuronpedia hosts under the plain name
        name += f"__l0-{l0}"
        why += f"; L0 {l0} is not the canonical {canonical}" if canonical else "; no canonical L0 known"
    return name, layer, f"Gemma Scope path layer_{layer}/width_{width}/average_l0_{l0} ({why})"


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
    path = r.path if r.path is not None else hub.download(r.repo, r.filename, f"pass the {role} as a local params.npz")
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
    np_id, layer, how = neuronpedia_source(f"{r.repo.repo_id}/{r.filename}" if r.repo else str(path.absolute()),
                                           d_in, expect_d_in)
    source = r.describe() | {
        "revision": hub.snapshot_revision(path) if r.repo else None,
        "sha256": sha256(path),
        "neuronpedia_id": np_id,
        "id_source": how,
        "layer": layer,
        "d_in": d_in,
        "d_sae": d_sae,
    }
    return SAE(d_in=d_in, d_sae=d_sae, source=source, **arrays)

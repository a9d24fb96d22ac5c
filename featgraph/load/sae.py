"""Gemma Scope JumpReLU SAEs: `params.npz` (Gemma Scope, Gemma 2) and `params.safetensors` + `config.json`
(Gemma Scope 2, Gemma 3), from a local path, a Hub path or a SAELens-style id.

Keys (docs/formats.md): W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae],
b_dec [d_in], threshold [d_sae] (Gemma Scope 2 spells them w_enc, w_dec, … in the same
orientation). Only the arrays a caller asks for are read (an input SAE needs the decoder,
an output SAE the encoder); every key's shape is checked from the file's header without
reading the data.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featgraph.core.weights import SAE, all_finite
from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import hub
from featgraph.runs.files import sha256

KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
PARAMS = "params.npz"
PARAMS_ST = "params.safetensors"  # Gemma Scope 2
CONFIG = "config.json"  # beside a Gemma Scope 2 params.safetensors (SAELens treats it as optional)
ST_KEYS = {k.lower(): k for k in KEYS}  # Gemma Scope 2's key names: w_enc, w_dec, b_enc, b_dec, threshold

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
    release: str | None = None

    def describe(self) -> dict:
        d = {"ref": self.text}
        if self.repo is not None:
            d.update(repo=self.repo.repo_id, file=self.filename, requested_revision=self.repo.revision)
        if self.canonical_rule:
            d["canonical"] = self.canonical_rule
        if self.release:
            d["release"] = self.release
        return d


def resolve(ref: str) -> SAERef:
    """Turn a path, Hub path or SAELens-style id (canonical Gemma Scope, or Gemma Scope 2) into an SAERef."""
    p = Path(ref).expanduser()
    if p.exists():
        if p.is_dir():
            found = [p / name for name in (PARAMS_ST, PARAMS) if (p / name).is_file()]
            if not found:
                raise BadInput(f"SAE directory {ref} has no {PARAMS} or {PARAMS_ST}")
            p = found[0]
        elif p.suffix not in (".npz", ".safetensors"):
            raise BadInput(f"SAE file {ref} is neither a .npz nor a .safetensors file: pass Gemma Scope's {PARAMS} "
                           f"or Gemma Scope 2's {PARAMS_ST}")
        return SAERef(ref, path=p)
    head, _, rest = ref.partition("/")
    if head in CANONICAL_RELEASES:
        return _resolve_canonical(ref, head, rest)
    if _GS2_RELEASE_RE.match(head):
        return _resolve_gs2_release(ref, head, rest)
    parts = ref.split("/")
    if ref.startswith((".", "/", "~")) or len(parts) < 3:
        raise BadInput(
            f"SAE {ref!r} not found: pass a params.npz or params.safetensors, a Hub path like "
            "google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82 or "
            "google/gemma-scope-2-1b-pt/resid_post_all/layer_12_width_16k_l0_small, or a SAELens-style id like "
            "gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical or gemma-scope-2-1b-pt-res-all/layer_12_width_16k_l0_small"
        )
    repo = hub.HubRef.parse("/".join(parts[:2]))
    sub = "/".join(parts[2:]).rstrip("/")
    if sub.endswith((".npz", ".safetensors")):
        filename = sub
    elif repo.repo_id.split("/")[1].startswith("gemma-scope-2-") or _GS2_SAE_ID_RE.match(sub.rsplit("/", 1)[-1]):
        filename = f"{sub}/{PARAMS_ST}"
    else:
        filename = f"{sub}/{PARAMS}"
    return SAERef(ref, repo=repo, filename=filename)


# Gemma Scope 2 (SAELens pretrained_saes.yaml, conversion_func gemma_3): releases
# gemma-scope-2-{size}-{pt|it}-{res|att|mlp|transcoders}[-all] in repos google/gemma-scope-2-{size}-{pt|it}; the
# folders resid_post, attn_out, mlp_out, transcoder (a few layers, L0 small|medium|big) and the same with _all
# (every layer, L0 small|big); ids layer_{L}_width_{W}_l0_{small|medium|big}[…].
_GS2_RELEASE_RE = re.compile(r"^gemma-scope-2-(?P<size>270m|1b|4b|12b|27b)-(?P<variant>pt|it)-"
                             r"(?P<kind>res|att|mlp|transcoders)(?P<all>-all)?$")
_GS2_FOLDER = {"res": "resid_post", "att": "attn_out", "mlp": "mlp_out", "transcoders": "transcoder"}
_GS2_SITE = {"resid_post": "res", "attn_out": "att", "mlp_out": "mlp", "transcoder": "transcoder"}
_GS2_SAE_ID_RE = re.compile(r"^layer_\d+_width_\w+?_l0_(small|medium|big)\w*$")
_GS2_LAYOUT_RE = re.compile(r"(?:^|/)(?P<folder>resid_post|attn_out|mlp_out|transcoder)(?P<all>_all)?/"
                            r"(?P<id>layer_(?P<layer>\d+)_width_(?P<width>\d+[km])_l0_(?P<l0>small|medium|big)(?P<suffix>\w*))(?:/|$)")
_GS2_REPO_RE = re.compile(r"gemma-scope-2-(?P<size>270m|1b|4b|12b|27b)-(?P<variant>pt|it)(?![\w-])")
_GEMMA3_NAME_RE = re.compile(r"(?:^|/)gemma-3-(?P<size>270m|1b|4b|12b|27b)(?:-(?P<variant>pt|it))?$")
# The Gemma Scope 2 SAEs Neuronpedia hosts, as SAELens' pretrained_saes.yaml lists them (its `neuronpedia:` entries,
# added in SAELens PR #623, January 2026): resid_post/layer_{L}_width_{W}_l0_medium, named
# {model}/{L}-gemmascope-2-res-{W} with model gemma-3-{size} (pt) or gemma-3-{size}-it. No other residual or
# attention-output SAE of Gemma Scope 2 has a Neuronpedia id there.
_GS2_NEURONPEDIA: dict[tuple[str, str], tuple[tuple[int, ...], tuple[str, ...]]] = {
    ("270m", "pt"): ((5, 9, 12, 15), ("16k", "65k", "262k", "1m")),
    ("270m", "it"): ((5, 9, 12, 15), ("16k", "65k", "262k")),
    ("1b", "pt"): ((7, 13, 17, 22), ("16k", "65k", "262k", "1m")),
    ("1b", "it"): ((7, 13, 17, 22), ("16k", "65k", "262k")),
    ("4b", "pt"): ((9, 17, 22, 29), ("16k", "65k", "262k", "1m")),
    ("4b", "it"): ((9, 17, 22, 29), ("16k", "65k", "262k")),
    ("12b", "pt"): ((12, 24, 31, 41), ("16k", "65k", "262k", "1m")),
    ("27b", "it"): ((16, 31, 40, 53), ("16k", "65k", "262k", "1m")),
}


def _resolve_gs2_release(ref: str, release: str, sae_id: str) -> SAERef:
    m = _GS2_RELEASE_RE.match(release)
    assert m is not None
    folder = _GS2_FOLDER[m["kind"]] + ("_all" if m["all"] else "")
    sae_id = sae_id.strip("/").removeprefix(f"{folder}/")  # SAELens' transcoder ids carry the folder
    if not _GS2_SAE_ID_RE.match(sae_id):
        raise BadInput(f"Gemma Scope 2 SAE id {ref!r} should look like {release}/layer_12_width_16k_l0_small "
                       "(layer_{L}_width_{W}_l0_{small|medium|big}; medium only outside the -all releases)")
    repo = hub.HubRef(f"google/gemma-scope-2-{m['size']}-{m['variant']}")
    return SAERef(ref, repo=repo, filename=f"{folder}/{sae_id}/{PARAMS_ST}", release=release)


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


def site_of_hook(hook: str) -> str | None:
    """What an SAE reads, from its hook point: `res`, `att`, `mlp` or `transcoder`.

    Gemma Scope 2's config.json names transformers modules (`model.layers.L.output`,
    `model.layers.L.self_attn.o_proj.input`, `…post_feedforward_layernorm.output`, `…pre_feedforward_layernorm.output`);
    SAELens names TransformerLens hooks (`blocks.L.hook_resid_post`, `blocks.L.attn.hook_z`, `hook_mlp_out`, `hook_mlp_in`).
    """
    rules = (("self_attn.o_proj.input", "att"), ("attn.hook_z", "att"), ("pre_feedforward_layernorm", "transcoder"),
             ("hook_mlp_in", "transcoder"), ("post_feedforward_layernorm", "mlp"), ("hook_mlp_out", "mlp"),
             ("hook_resid_post", "res"))
    for needle, site in rules:
        if needle in hook:
            return site
    return "res" if re.fullmatch(r"model\.layers\.\d+\.output", hook) else None


def _hook_layer(hook: object) -> int | None:
    m = re.search(r"(?:layers|blocks)\.(\d+)\.", hook) if isinstance(hook, str) else None
    return int(m[1]) if m else None


@dataclass(frozen=True)
class GS2Name:
    """How a Gemma Scope 2 SAE is named: Neuronpedia's source id when it has one, else featgraph's, and why."""

    neuronpedia_id: str | None
    fallback_id: str
    layer: int
    site: str
    how: str
    note: str | None


def gemma_scope_2_name(text: str, config: dict | None = None) -> GS2Name | None:
    """The naming of a Gemma Scope 2 SAE at path `text` (None when the path has no Gemma Scope 2 layout).

    The layout `{folder}[_all]/layer_{L}_width_{W}_l0_{size}` gives site, layer, width and L0 size; the model
    (size, pt/it) comes from `gemma-scope-2-{size}-{pt|it}` in the path or config.json's `model_name`.
    """
    text = text.replace("\\", "/")
    m = _GS2_LAYOUT_RE.search(text)
    if not m:
        return None
    layer, width, folder = int(m["layer"]), m["width"], m["folder"] + (m["all"] or "")
    site = _GS2_SITE[m["folder"]]
    releases = list(_GS2_REPO_RE.finditer(text[: m.start()]))
    r = releases[-1] if releases else None  # the release nearest before the layout names the model
    size, variant = (r["size"], r["variant"]) if r else (None, None)
    where = f"Gemma Scope 2 path {folder}/{m['id']}"
    if size is None and isinstance((config or {}).get("model_name"), str):
        mm = _GEMMA3_NAME_RE.search(config["model_name"])  # type: ignore[index]
        if mm:
            size, variant = mm["size"], mm["variant"] or "pt"
            where += f" (model {config['model_name']} from config.json)"  # type: ignore[index]
    fallback = f"{layer}-gemmascope-2-{folder}-{width}-l0_{m['l0']}{m['suffix']}"
    hosted = _GS2_NEURONPEDIA.get((size or "", variant or ""))
    if (site == "res" and not m["all"] and m["l0"] == "medium" and not m["suffix"] and hosted
            and layer in hosted[0] and width in hosted[1]):
        return GS2Name(f"{layer}-gemmascope-2-res-{width}", fallback, layer, site, where, None)
    model = f"gemma-3-{size}{'-it' if variant == 'it' else ''}" if size else "this model"
    listed = (f"{model}: resid_post layers {', '.join(map(str, hosted[0]))} at l0_medium, widths {', '.join(hosted[1])}"
              if hosted else f"none for {model}" if size else "the model is not named in the path or config.json")
    note = (f"Neuronpedia has no source for Gemma Scope 2's {folder}/{m['id']} (SAELens' pretrained_saes.yaml lists "
            f"Neuronpedia sources only for {listed})")
    return GS2Name(None, fallback, layer, site, where, note)


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


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the tensors in a .safetensors file, read from its header only (Gemma Scope 2's keys mapped to ours)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {ST_KEYS.get(k, k): tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:
        raise BadInput(f"{path} is not a readable .safetensors file ({e.__class__.__name__}): re-download it") from None


def _read_arrays(path: Path, parts: Sequence[str]) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        names = {v: k for k, v in ST_KEYS.items()}
        with safe_open(str(path), framework="pt") as f:
            present = set(f.keys())
            return {k: f.get_tensor(names[k] if names[k] in present else k).to(torch.float32).contiguous() for k in parts}
    with np.load(path) as npz:
        return {k: torch.from_numpy(np.ascontiguousarray(npz[k], dtype=np.float32)) for k in parts}


def _sae_config(r: SAERef, path: Path) -> dict | None:
    """Gemma Scope 2's config.json beside params.safetensors, when there is one (SAELens does without it too)."""
    if path.suffix != ".safetensors":
        return None
    if r.repo is not None:
        try:
            cfg_path = hub.download(r.repo, str(Path(r.filename or "").parent / CONFIG))
        except FeatgraphError:
            return None  # absent on the Hub, or not cached offline: the path still names the SAE
    else:
        cfg_path = path.parent / CONFIG
        if not cfg_path.is_file():
            return None
    try:
        cfg = json.loads(Path(cfg_path).read_text())
    except (OSError, ValueError):
        raise BadInput(f"{cfg_path} is not valid JSON: re-download the SAE's {CONFIG}") from None
    if not isinstance(cfg, dict):
        raise BadInput(f"{cfg_path} is not a JSON object: re-download the SAE's {CONFIG}")
    if cfg.get("architecture", "jump_relu") != "jump_relu":
        raise BadInput(f"{cfg_path} says architecture {cfg.get('architecture')!r}: featgraph reads JumpReLU SAEs (jump_relu)")
    return cfg


def check_d_in(role: str, text: str, d_in: int, expect: int | Sequence[int] | None) -> None:
    """A one-line BadInput when an SAE's input size is none of those the model offers."""
    allowed = (expect,) if isinstance(expect, int) else tuple(expect or ())
    if not allowed or d_in in allowed:
        return
    what = f"the model's d_model is {allowed[0]}" + (f" and its n_heads·d_head {allowed[1]}" if len(allowed) > 1 else "")
    raise BadInput(f"{role}{' ' + text if text else ''} reads vectors of size {d_in} but {what}: pick an SAE of this model")


def load(ref: str | SAERef, parts: tuple[str, ...] = KEYS, expect_d_in: int | Sequence[int] | None = None,
         role: str = "SAE", d_attn: int | None = None) -> SAE:
    """Load the arrays `parts` of an SAE after checking every key and shape.

    expect_d_in: the input sizes allowed (the model's d_model first; an output SAE may also read the heads'
    concatenated outputs, n_heads·d_head). d_attn: that size, for naming an attention-output SAE by its d_in.
    """
    r = ref if isinstance(ref, SAERef) else resolve(ref)
    fix = f"pass the {role} as a local {PARAMS_ST if (r.filename or '').endswith('.safetensors') else PARAMS}"
    path = r.path if r.path is not None else hub.download(r.repo, r.filename, fix)
    shapes = safetensors_shapes(path) if path.suffix == ".safetensors" else npz_shapes(path)
    fmt = "Gemma Scope 2 params.safetensors" if path.suffix == ".safetensors" else "params.npz"
    missing = [k for k in KEYS if k not in shapes]
    if missing:
        raise BadInput(f"{role} {r.text}: {fmt} lacks {', '.join(missing)} (Gemma Scope files have "
                       f"{', '.join(k.lower() if path.suffix == '.safetensors' else k for k in KEYS)})")
    d_in, d_sae = shapes["W_enc"] if len(shapes["W_enc"]) == 2 else (None, None)
    want = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,), "threshold": (d_sae,)}
    for k, shape in want.items():
        if d_in is None or shapes[k] != shape:
            raise BadInput(f"{role} {r.text}: {k} has shape {list(shapes[k])}, expected {list(shape)} for W_enc {list(shapes['W_enc'])}")
    assert d_in is not None and d_sae is not None
    check_d_in(role, r.text, d_in, expect_d_in)
    config = _sae_config(r, path)
    try:
        arrays = _read_arrays(path, parts)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, RuntimeError) as e:
        raise BadInput(f"{role} {r.text}: cannot read {path} ({e.__class__.__name__}); the file may be corrupt, re-download it") from None
    for k, a in arrays.items():
        if not all_finite(a):
            raise BadInput(f"{role} {r.text}: {k} has NaN or infinite values")
    text = f"{r.repo.repo_id}/{r.filename}" if r.repo else str(path.absolute())
    d_model = expect_d_in if isinstance(expect_d_in, int) else next(iter(expect_d_in or ()), None)
    gs2 = gemma_scope_2_name(text, config)
    hook = (config or {}).get("hf_hook_point_in")
    if gs2 is not None:
        np_id, layer, how, site = gs2.neuronpedia_id, gs2.layer, gs2.how, gs2.site
    else:
        np_id, layer, how = neuronpedia_source(text, d_in, d_model, d_attn)
        k = _KIND_RE.search(text.replace("\\", "/"))
        site = {"transcoders": "transcoder"}.get(k["kind"], k["kind"]) if k else None
    if isinstance(hook, str):
        site = site_of_hook(hook) or site
        layer = layer if layer is not None else _hook_layer(hook)
    source = r.describe() | {
        "revision": hub.snapshot_revision(path) if r.repo else None,
        "sha256": sha256(path),
        "format": "safetensors" if path.suffix == ".safetensors" else "npz",
        "neuronpedia_id": np_id,
        "id_source": how if np_id else None,
        "layer": layer,
        "site": site,
        "d_in": d_in,
        "d_sae": d_sae,
    }
    if gs2 is not None and np_id is None:
        source |= {"fallback_id": gs2.fallback_id, "fallback_how": f"{gs2.how}: not on Neuronpedia, named by featgraph",
                   "id_note": gs2.note}
    if config is not None:
        source["config"] = {k: config[k] for k in ("model_name", "hf_hook_point_in", "hf_hook_point_out", "width", "l0",
                                                   "type", "architecture", "affine_connection") if k in config}
    return SAE(d_in=d_in, d_sae=d_sae, source=source, **arrays)

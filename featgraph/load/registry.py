"""SAELens' SAE registry (`sae_lens/pretrained_saes.yaml`) as featgraph reads it: a snapshot shipped as package data.

featgraph/load/saelens_registry.json.gz is made by scripts/saelens_registry.py from a pinned sae-lens wheel (read
as a zip: sae_lens is never imported); the snapshot records the version. FEATGRAPH_SAE_REGISTRY=installed reads
the `pretrained_saes.yaml` of the installed sae-lens instead (found through its distribution's file list, again
without importing it), and FEATGRAPH_SAE_REGISTRY=PATH a yaml or snapshot file. docs/formats.md says why.

What the registry does not say — the hook point an SAE reads and, mostly, its width — SAELens' loaders
(sae_lens/loading/pretrained_sae_loaders.py) work out per `conversion_func` from folder names or from the SAE's
own config file; `describe` mirrors the rules that need no download and says where each value came from.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from featgraph.errors import BadInput

ENV = "FEATGRAPH_SAE_REGISTRY"
SNAPSHOT = Path(__file__).resolve().parent / "saelens_registry.json.gz"


class Entry(NamedTuple):
    """One SAE of the registry: `release/sae_id` -> Hub `repo` + `path`, and what SAELens knows about it."""

    release: str
    sae_id: str
    repo: str
    path: str
    model: str
    conversion: str | None
    neuronpedia: str | None = None  # `model/source`, Neuronpedia's ids
    l0: float | None = None
    norm_scaling_factor: float | None = None
    config_overrides: dict = {}  # noqa: RUF012 (never mutated: the registry's own dict)
    neuronpedia_from: str | None = None  # the alias (same repo + path) whose Neuronpedia id this entry takes

    @property
    def ref(self) -> str:
        return f"{self.release}/{self.sae_id}"


@dataclass(frozen=True)
class Registry:
    source: str
    version: str | None
    releases: dict[str, dict[str, Entry]]

    def entries(self) -> Iterator[Entry]:
        for saes in self.releases.values():
            yield from saes.values()

    @functools.cached_property
    def by_location(self) -> dict[tuple[str, str], tuple[Entry, ...]]:
        """(repo, path) -> the entries naming it (an SAE and its `-canonical` alias share one)."""
        out: dict[tuple[str, str], list[Entry]] = {}
        for e in self.entries():
            out.setdefault((e.repo, e.path.strip("/")), []).append(e)
        return {k: tuple(v) for k, v in out.items()}

    @functools.cached_property
    def by_path(self) -> dict[str, tuple[Entry, ...]]:
        """path -> the entries of every repo holding it (a `--local-dir` copy names no repo)."""
        out: dict[str, list[Entry]] = {}
        for e in self.entries():
            out.setdefault(e.path.strip("/"), []).append(e)
        return {k: tuple(v) for k, v in out.items()}

    @functools.cached_property
    def series(self) -> tuple[tuple[frozenset[str], Series], ...]:
        """Every residual series (atlas defaults), with the model names each belongs to."""
        return _all_series(self)

    @functools.cached_property
    def repos(self) -> frozenset[str]:
        return frozenset(e.repo for e in self.entries())

    def lookup(self, release: str, sae_id: str) -> Entry | None:
        return self.releases.get(release, {}).get(sae_id)

    def at(self, repo: str, path: str) -> tuple[Entry, ...]:
        """The entries of `path` in `repo`, best first: one with a Neuronpedia id, from a `-canonical` release."""
        found = self.by_location.get((repo, path.strip("/")), ())
        return tuple(sorted(found, key=lambda e: (e.neuronpedia is None, not e.release.endswith("-canonical"), e.release)))


def _from_snapshot(data: dict, source: str) -> Registry:
    fields = data.get("sae_fields", ["id", "path", "l0", "neuronpedia", "norm_scaling_factor"])
    releases: dict[str, dict[str, Entry]] = {}
    for name, rel in data["releases"].items():
        saes = {}
        for row in rel["saes"]:
            s = dict(zip(fields, row))
            saes[s["id"]] = Entry(name, s["id"], rel["repo"], str(s["path"]), rel["model"], rel.get("conversion"),
                                  s.get("neuronpedia"), s.get("l0"), s.get("norm_scaling_factor"),
                                  rel.get("config_overrides") or {})
        releases[name] = saes
    return Registry(source, data.get("sae_lens_version"), _share_neuronpedia(releases))


def _share_neuronpedia(releases: dict[str, dict[str, Entry]]) -> dict[str, dict[str, Entry]]:
    """An entry without a Neuronpedia id takes its alias's: SAELens lists the id once, under the `-canonical` release
    (gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82 and gemma-scope-2b-pt-res-canonical/layer_12/width_16k/
    canonical are one file, repo + path, and one Neuronpedia source). Only where every alias that has an id has the
    same one."""
    ids: dict[tuple[str, str], dict[str, str]] = {}
    for saes in releases.values():
        for e in saes.values():
            if e.neuronpedia:
                ids.setdefault((e.repo, e.path.strip("/")), {}).setdefault(e.neuronpedia, e.ref)
    out: dict[str, dict[str, Entry]] = {}
    for name, saes in releases.items():
        out[name] = {}
        for sid, e in saes.items():
            found = ids.get((e.repo, e.path.strip("/")), {})
            if not e.neuronpedia and len(found) == 1:
                (np_id, ref), = found.items()
                e = e._replace(neuronpedia=np_id, neuronpedia_from=ref)
            out[name][sid] = e
    return out


def _from_yaml(text: str, source: str, version: str | None) -> Registry:
    try:
        import yaml
    except ImportError:
        raise BadInput(f"{ENV} points at a yaml registry, which needs PyYAML: pip install pyyaml") from None
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise BadInput(f"{source} is not SAELens' pretrained_saes.yaml (not a mapping of releases)")
    rels = {}
    try:
        for name, rel in data.items():
            rels[name] = {"repo": rel["repo_id"], "model": rel["model"], "conversion": rel.get("conversion_func"),
                          "config_overrides": rel.get("config_overrides") or {},
                          "saes": [[s["id"], str(s["path"]), s.get("l0"), s.get("neuronpedia"), s.get("norm_scaling_factor")]
                                   for s in rel["saes"]]}
    except (KeyError, TypeError) as e:
        raise BadInput(f"{source}: release {name!r} lacks {e} (not SAELens' pretrained_saes.yaml?)") from None
    return _from_snapshot({"releases": rels, "sae_lens_version": version}, source)


def _installed() -> tuple[str, str, str]:
    """The installed sae-lens's pretrained_saes.yaml (text, where, version), found without importing sae_lens."""
    from importlib import metadata

    try:
        dist = metadata.distribution("sae-lens")
    except metadata.PackageNotFoundError:
        raise BadInput(f"{ENV}=installed but sae-lens is not installed: pip install sae-lens, or unset {ENV} to use "
                       "featgraph's snapshot") from None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith("sae_lens/pretrained_saes.yaml"):
            path = Path(str(dist.locate_file(f)))
            return path.read_text(), str(path), dist.version
    raise BadInput(f"the installed sae-lens {dist.version} has no sae_lens/pretrained_saes.yaml")


@functools.lru_cache(maxsize=4)
def _load(choice: str) -> Registry:
    if choice == "":
        data = json.loads(gzip.decompress(SNAPSHOT.read_bytes()))
        return _from_snapshot(data, f"featgraph snapshot of {data.get('source')}")
    if choice == "installed":
        text, where, version = _installed()
        return _from_yaml(text, f"installed sae-lens {version} ({where})", version)
    path = Path(choice).expanduser()
    if not path.is_file():
        raise BadInput(f"{ENV}={choice}: no such file (pass installed, a pretrained_saes.yaml or a snapshot .json.gz)")
    if path.name.endswith(".json.gz"):
        return _from_snapshot(json.loads(gzip.decompress(path.read_bytes())), str(path))
    return _from_yaml(path.read_text(), str(path), None)


def get() -> Registry:
    """The registry in use (the snapshot unless FEATGRAPH_SAE_REGISTRY says otherwise)."""
    return _load(os.environ.get(ENV, "").strip())


# ---------------------------------------------------------------- what SAELens' loaders derive without downloading

# The formats featgraph reads (featgraph.load.sae readers) by SAELens conversion_func; None is SAELens' own format.
FORMATS: dict[str | None, str] = {
    None: "saelens", "gemma_2": "gemma_scope", "gemma_2_transcoder": "gemma_scope_transcoder", "gemma_3": "gemma_scope_2",
    "llama_scope": "llama_scope", "llama_scope_r1_distill": "llama_scope_r1", "dictionary_learning_1": "dictionary_learning",
    "connor_rob_hook_z": "hook_z", "qwen_scope": "qwen_scope", "goodfire": "goodfire", "deepseek_r1": "deepseek_r1",
    "mwhanna_transcoder": "circuit_tracer",
}


def format_of(e: Entry) -> str | None:
    """The featgraph reader for an entry (None: featgraph does not read it). Gemma Scope 2's transcoders share the
    gemma_3 conversion with its SAEs: their folder (`transcoder/`, `transcoder_all/`) says which; its cross-layer
    transcoders (`clt`) are not read."""
    if e.conversion == "gemma_3" and "clt" in e.path:
        return None
    if e.conversion == "gemma_3" and re.search(r"(?:^|/)transcoder(?:_all)?/", e.path):
        return "gemma_scope_2_transcoder"
    return FORMATS.get(e.conversion)
# Widths as SAELens' gemma_2 loader maps them (width_16k -> 16384 ...), also Gemma Scope 2's and Llama Scope's names.
WIDTHS = {"4k": 4096, "16k": 16384, "32k": 32768, "65k": 65536, "128k": 131072, "131k": 131072, "262k": 262144,
          "524k": 524288, "1m": 1048576}
_HOOK_RE = re.compile(r"^(?P<hook>blocks\.(?P<layer>\d+)\.(?:attn\.)?(?:hook_resid_pre|hook_resid_mid|hook_resid_post|"
                      r"hook_attn_out|hook_mlp_out|hook_z|hook_mlp_in))(?:_\d+)?$")
_LAYER_RE = re.compile(r"layer_(\d+)")


def files(e: Entry) -> tuple[str, ...]:
    """The repo files SAELens' loader for the entry's conversion_func reads (config first where there is one)."""
    p, c = e.path.strip("/"), e.conversion
    if c is None:
        return (f"{p}/cfg.json", f"{p}/sae_weights.safetensors")
    if c in ("gemma_2", "gemma_2_transcoder"):
        return (f"{p}/params.npz",)
    if c == "gemma_3":
        return (f"{p}.safetensors",) if "clt" in p else (f"{p}/config.json", f"{p}/params.safetensors")
    if c == "llama_scope":
        return (f"{p}/hyperparams.json", f"{p}/checkpoints/final.safetensors")
    if c == "llama_scope_r1_distill":
        return (f"{p}/config.json", f"{p}/sae_weights.safetensors")
    if c == "dictionary_learning_1":
        return (f"{p}/config.json", f"{p}/ae.pt")
    if c == "connor_rob_hook_z":
        return (p.split(".pt")[0] + "_cfg.json", p)
    if c == "mwhanna_transcoder":
        return ("config.yaml", p)  # SAELens also reads wandb-config.yaml (widths); the weights' shapes say them
    if c == "mntss_clt_layer_transcoder":
        return ("config.yaml", f"W_enc_{p}.safetensors", f"W_dec_{p}.safetensors")
    return (p,)  # qwen_scope, goodfire, deepseek_r1, temporal: one checkpoint file named by the path


def hook(e: Entry) -> tuple[str | None, str]:
    """(TransformerLens hook name the SAE reads, where that came from), by the rules of SAELens' loaders."""
    p, c, why = e.path, e.conversion, f"SAELens' {e.conversion} loader rule on the path"
    m = _LAYER_RE.search(p)
    if c == "gemma_2":
        if "embedding" in p:
            return ("hook_embed", why) if "res" in e.repo else (None, "no rule")
        kind = "hook_resid_post" if "res" in e.repo else "hook_mlp_out" if "mlp" in e.repo else "attn.hook_z" if "att" in e.repo else None
        return (f"blocks.{m[1]}.{kind}", why) if m and kind else (None, "no rule")
    if c == "gemma_3":
        kind = next((k for f, k in (("resid_post", "hook_resid_post"), ("attn_out", "attn.hook_z"), ("mlp_out", "hook_mlp_out"),
                                    ("transcoder", "hook_mlp_in"), ("clt", "hook_mlp_in")) if f in p), None)
        return (f"blocks.{m[1]}.{kind}", why) if m and kind else (None, "no rule")
    if c == "gemma_2_transcoder":
        return (f"blocks.{m[1]}.ln2.hook_normalized", why) if m else (None, "no rule")
    if c == "llama_scope":
        mm = re.search(r"-L(\d+)([RAM])-", p)
        sites = {"R": "hook_resid_post", "A": "hook_attn_out", "M": "hook_mlp_out"}
        return (f"blocks.{mm[1]}.{sites[mm[2]]}", "Llama Scope path L{layer}{R|A|M} (lm_saes: R resid_post, A attn_out, "
                "M mlp_out; hyperparams.json's hook_point_in is authoritative)") if mm else (None, "no rule")
    if c == "llama_scope_r1_distill":
        mm = re.search(r"/L(\d+)R$", p)
        return (f"blocks.{mm[1]}.hook_resid_post", "path L{layer}R (config.json's hook_point_in is authoritative)") if mm \
            else (None, "no rule")
    if c == "dictionary_learning_1":
        mm = re.search(r"resid_post_layer_(\d+)", p)
        return (f"blocks.{mm[1]}.hook_resid_post", why + " (resid_post_layer_L; config.json's trainer.layer)") if mm \
            else (None, "no rule")
    if c == "qwen_scope":
        mm = re.search(r"layer(\d+)\.sae\.pt", p)
        return (f"blocks.{mm[1]}.hook_resid_post", why) if mm else (None, "no rule")
    if c in ("goodfire", "deepseek_r1"):
        mm = re.search(r"l(\d+)\.pth?$", p)
        return (f"blocks.{mm[1]}.hook_resid_post", why) if mm else (None, "no rule")
    if c == "mwhanna_transcoder":
        return (f"blocks.{m[1]}.mlp.hook_in", why) if m else (None, "no rule")
    if c == "mntss_clt_layer_transcoder" and p.isdigit():
        return f"blocks.{p}.hook_mlp_in", why
    if c == "temporal" and isinstance(e.config_overrides.get("hook_name"), str):
        return e.config_overrides["hook_name"], "the registry's config_overrides.hook_name"
    h = _HOOK_RE.match(e.sae_id)
    if h:
        name = h["hook"].replace(".hook_z", ".attn.hook_z").replace(".attn.attn.", ".attn.")
        return name, "the SAE id (SAELens names these SAEs by hook; cfg.json's hook_name is authoritative)"
    return None, "no rule: the SAE's own config says"


def d_sae(e: Entry) -> tuple[int | None, str | None]:
    """The width, where a name says it (SAELens reads it from the SAE's files otherwise)."""
    c = e.conversion
    if c in ("gemma_2", "gemma_2_transcoder", "gemma_3"):
        m = re.search(r"width_(\d+[km])", e.path)
        if m and m[1] in WIDTHS:
            return WIDTHS[m[1]], f"path width_{m[1]}"
    if c == "qwen_scope":
        m = re.search(r"-W(\d+)K-", e.repo)
        return (int(m[1]) * 1024, f"repo W{m[1]}K") if m else (None, None)
    if c == "connor_rob_hook_z":
        m = re.search(r"_ds(\d+)_", e.path)
        return (int(m[1]), f"file name ds{m[1]}") if m else (None, None)
    m = re.search(r"(?:^|-)(\d+k)(?:-|$)", e.release)
    if c is None and m and m[1] in WIDTHS and "v5" in e.release:
        return WIDTHS[m[1]], f"release name {m[1]}"
    return None, None


def site_of(hook_name: str | None) -> str | None:
    """What a TransformerLens hook reads: res, attn_out (after o_proj, residual units), att (hook_z, before o_proj),
    mlp or transcoder."""
    if not hook_name:
        return None
    for needle, site in (("hook_resid", "res"), ("hook_embed", "res"), ("hook_attn_out", "attn_out"), ("hook_z", "att"),
                         ("hook_mlp_out", "mlp"), ("hook_mlp_in", "transcoder"), ("ln2.hook_normalized", "transcoder"),
                         ("mlp.hook_in", "transcoder")):
        if needle in hook_name:
            return site
    return None


def pairing(hook_name: str | None) -> tuple[int | None, int | None]:
    """(input_of_layer, output_of_layer) from a hook point: the layer whose attention reads the SAE's stream (keys,
    queries and values), and the layer whose attention output the SAE reads (an OV destination).

    resid_pre L is layer L's input, and so is resid_post L−1 (the same stream); hook_embed is layer 0's input.
    resid_post L, resid_mid L, attn_out L and hook_z L hold layer L's attention output (hook_z before o_proj).
    """
    if not hook_name:
        return None, None
    if hook_name == "hook_embed":
        return 0, None
    m = re.match(r"blocks\.(\d+)\.(.+)$", hook_name)
    if not m:
        return None, None
    L, rest = int(m[1]), m[2]
    if rest in ("hook_mlp_in", "ln2.hook_normalized", "mlp.hook_in"):  # a transcoder: read after L's attention, written
        return L + 1, L  # into the residual read from layer L + 1 on (docs/maths.md, "Transcoder features")
    return {"hook_resid_pre": (L, L - 1 if L > 0 else None), "hook_resid_post": (L + 1, L), "hook_resid_mid": (None, L),
            "hook_attn_out": (None, L), "attn.hook_z": (None, L), "hook_z": (None, L)}.get(rest, (None, None))


def neuronpedia_conflict(e: Entry, layer: int | None, input_of: int | None) -> str | None:
    """Why the entry's Neuronpedia id cannot name this SAE, if it cannot: Neuronpedia's source ids start with the
    layer (the hook's block, or the residual position after it: gpt2-small-res-jb's blocks.11.hook_resid_post is
    `12-res-jb`) or `e-` for the embeddings. One registry entry breaks this (gemma-scope-9b-pt-res
    layer_2/width_16k/average_l0_8 -> 20-gemmascope-res-131k__l0-10, another SAE's id)."""
    source = (e.neuronpedia or "").partition("/")[2]
    m = re.match(r"(\d+|e)-", source)
    if not source or not m or layer is None:
        return None
    if (m[1] == "e" and input_of == 0) or (m[1].isdigit() and int(m[1]) in (layer, layer + 1)):
        return None
    return (f"the registry gives {e.ref} the Neuronpedia id {e.neuronpedia}, whose layer {m[1]} is not this SAE's "
            f"({layer}): featgraph does not use it (its labels would be another SAE's)")


def describe(e: Entry, reg: Registry | None = None) -> dict:
    """What featgraph would use for the entry, without downloading anything (the `featgraph sae` record)."""
    reg = reg or get()
    h, h_from = hook(e)
    width, width_from = d_sae(e)
    layer = int(m[1]) if h and (m := re.match(r"blocks\.(\d+)\.", h)) else (0 if h == "hook_embed" else None)
    inp, outp = pairing(h)
    fmt = format_of(e)
    conflict = neuronpedia_conflict(e, layer, inp)
    np_model, _, np_source = ("" if conflict else e.neuronpedia or "").partition("/")
    mfpk = dict((e.config_overrides or {}).get("model_from_pretrained_kwargs") or {})
    return {
        "ref": e.ref, "release": e.release, "sae_id": e.sae_id, "repo": e.repo, "path": e.path, "files": list(files(e)),
        "format": fmt or f"{e.conversion} (featgraph does not read it)", "readable": fmt is not None,
        "model": e.model, "hook": h, "hook_from": h_from, "site": site_of(h), "layer": layer,
        "input_of_layer": inp, "output_of_layer": outp, "d_sae": width, "d_sae_from": width_from or "the SAE's files say",
        "neuronpedia_id": np_source or None, "neuronpedia_model": np_model or None,
        "neuronpedia_from": None if conflict else e.neuronpedia_from,
        "neuronpedia_note": conflict or (None if e.neuronpedia else
                                         f"SAELens' registry ({reg.source}) lists no Neuronpedia source for {e.ref}"),
        "l0": e.l0, "norm_scaling_factor": e.norm_scaling_factor, "config_overrides": e.config_overrides,
        "model_from_pretrained_kwargs": mfpk, "registry": {"release": e.release, "sae_id": e.sae_id,
                                                          "sae_lens_version": reg.version, "source": reg.source},
    }


# ---------------------------------------------------------------- models the registry names

# The registry names models by TransformerLens or Hub names; these rules give their transformers model_type(s).
_MODEL_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"^(google/)?gemma-2-", ("gemma2",)),
    (r"^(google/)?gemma-3-(270m|1b)", ("gemma3_text",)),
    (r"^(google/)?gemma-3-", ("gemma3",)),
    (r"^gemma-2b", ("gemma",)),
    (r"^gpt2", ("gpt2",)),
    (r"^pythia", ("gpt_neox",)),
    (r"(?i)llama", ("llama",)),
    (r"^mistral", ("mistral",)),
    (r"(?i)qwen3\.5", ("qwen3_5", "qwen3_5_moe")),
    (r"(?i)qwen3-30b-a3b", ("qwen3_moe",)),
    (r"(?i)qwen3-", ("qwen3",)),
    (r"(?i)qwen2\.5", ("qwen2",)),
    (r"gpt-oss", ("gpt_oss",)),
)


def model_types(model: str) -> tuple[str, ...]:
    """transformers model_type(s) of a model the registry names (`gpt2-small` -> gpt2); () when unknown."""
    return next((types for pattern, types in _MODEL_TYPES if re.search(pattern, model)), ())


# ---------------------------------------------------------------- atlas defaults: complete per-layer residual series

_ALIASES = {"gpt2": "gpt2-small", "mistral-7b-v0.1": "mistral-7b"}  # Hub names -> the registry's TransformerLens names


def _model_key(name: str) -> str:
    key = name.rsplit("/", 1)[-1].lower()
    key = re.sub(r"^(gemma-3-\w+?)-pt$", r"\1", key)  # google/gemma-3-1b-pt is gemma-3-1b, as infer_model_id says
    return _ALIASES.get(key, key)


@dataclass(frozen=True)
class Series:
    """A residual SAE for every residual position of a model: `refs[p]` reads the input of layer p (resid_pre p,
    the same stream as resid_post p−1). An atlas layer L reads refs[L] (keys, queries, values) and refs[L+1] (OV)."""

    release: str
    template: str
    refs: dict[int, str]
    neuronpedia: bool
    d_sae: int | None

    def sae(self, layer: int) -> str:
        """The atlas' `sae_template` function: the residual SAE of layer `layer` (resid_post `layer`)."""
        try:
            return self.refs[layer + 1]
        except KeyError:
            raise BadInput(f"{self.release} has no residual SAE after layer {layer}") from None


def residual_series(model: str, reg: Registry | None = None) -> list[Series]:
    """The model's registry SAEs on the residual stream, grouped into series (one SAE id pattern of one release,
    the layer number aside; resid_pre and resid_post of a release together), best first: every SAE on Neuronpedia,
    a `-canonical` release, the most positions, the narrowest (widths the registry does not say last), by name."""
    reg = reg or get()
    key = _model_key(model)
    return [s for keys, s in reg.series if key in keys]


def _all_series(reg: Registry) -> tuple[tuple[frozenset[str], Series], ...]:
    groups: dict[tuple[str, str], dict[int, tuple[str, bool, int | None]]] = {}
    names: dict[tuple[str, str], set[str]] = {}
    for e in reg.entries():
        if FORMATS.get(e.conversion) is None:
            continue
        h, _ = hook(e)
        inp, _ = pairing(h)
        if inp is None or h is None or site_of(h) != "res":
            continue
        m = re.match(r"blocks\.(\d+)\.", h)
        layer = int(m[1]) if m else inp
        pattern = re.sub(rf"(?<!\d){layer}(?!\d)", "{layer}", e.sae_id, count=1).replace("hook_resid_pre", "hook_resid_*") \
            .replace("hook_resid_post", "hook_resid_*")
        width = d_sae(e)[0] or _np_width(e)
        groups.setdefault((e.release, pattern), {}).setdefault(inp, (e.ref, bool(e.neuronpedia), width))
        names.setdefault((e.release, pattern), set()).update({_model_key(e.model), (e.neuronpedia or "").partition("/")[0]} - {""})
    series = [(frozenset(names[k]), Series(k[0], k[1], {p: v[0] for p, v in sorted(g.items())}, all(v[1] for v in g.values()),
                                           next(iter({v[2] for v in g.values()})))) for k, g in groups.items()]
    return tuple(sorted(series, key=lambda x: (not x[1].neuronpedia, not x[1].release.endswith("-canonical"), -len(x[1].refs),
                                               x[1].d_sae is None, x[1].d_sae or 0, x[1].release, x[1].template)))


def _np_width(e: Entry) -> int | None:
    m = re.search(r"-(\d+k|1m)(?:$|__|-)", (e.neuronpedia or "").partition("/")[2])
    return WIDTHS.get(m[1]) if m else None


def atlas_default(model: str, n_layers: int, reg: Registry | None = None) -> Series | None:
    """The series an atlas of `model` uses by default: the first complete one (a residual SAE at every position
    1..n_layers, i.e. after every layer), or None."""
    for s in residual_series(model, reg):
        if all(p in s.refs for p in range(1, n_layers + 1)):
            return s
    return None


def atlas_models(reg: Registry | None = None) -> list[str]:
    """The registry's models with a residual series that has an SAE after each of its layers (positions 1..max, with
    max its deepest position): those `atlas` gives default SAEs (when the model has that many layers), leaving out models
    whose model_type featgraph does not read."""
    from featgraph.families import FAMILIES

    reg = reg or get()
    out = []
    for model in sorted({e.model for e in reg.entries()}):
        types = model_types(model)
        if types and not any(t in FAMILIES for t in types):  # e.g. Qwen3.5 (qwen3_5): featgraph cannot load the model
            continue
        for s in residual_series(model, reg):
            top = max(s.refs)
            if top > 1 and all(p in s.refs for p in range(1, top + 1)):
                out.append(f"{model} ({s.release})")
                break
    return out

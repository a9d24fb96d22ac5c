"""SAEs from a local path, a Hub path or a SAELens `release/sae_id`, in every format SAELens' registry uses that
featgraph reads (one reader module per format beside this one; docs/formats.md), named as Neuronpedia names them.

Which SAE a reference is comes from SAELens' registry (featgraph.load.registry): a `release/sae_id`, a Hub path
`OWNER/NAME/PATH`, an HF cache path (`models--OWNER--NAME/snapshots/<commit>/PATH`) or a `--local-dir` copy whose
path names the repo or matches one registry path, all map to the same entry, hence the same ids (docs/ids.md).

Every reader returns featgraph's orientation: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae],
b_dec [d_in], threshold [d_sae]; only the arrays a caller asks for are read (an input SAE needs the decoder, an
output SAE the encoder), after every key and shape is checked from the file's header where the format has one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from featgraph.core.weights import SAE
from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import hub
from featgraph.load import registry as reg
from featgraph.load.sae import (
    circuit_tracer,
    deepseek_r1,
    dictionary_learning,
    gemma_scope,
    gemma_scope_2,
    gemma_scope_2_transcoder,
    gemma_scope_transcoder,
    goodfire,
    hook_z,
    llama_scope,
    llama_scope_r1,
    openai,
    qwen_scope,
    saelens,
)
from featgraph.load.sae.common import KEYS, finite, torch_load
from featgraph.load.sae.gemma_scope import npz_shapes
from featgraph.load.sae.gemma_scope_2 import ST_KEYS, safetensors_shapes
from featgraph.runs.files import sha256_cached

__all__ = ["KEYS", "ST_KEYS", "SAERef", "check_d_in", "info", "load", "neuronpedia_source", "npz_shapes", "resolve",
           "safetensors_shapes", "site_of_hook"]

PARAMS = gemma_scope.PARAMS
PARAMS_ST = gemma_scope_2.PARAMS
CONFIG = gemma_scope_2.CONFIG
READERS: dict[str, ModuleType] = {m.NAME: m for m in (gemma_scope, gemma_scope_2, saelens, llama_scope, llama_scope_r1,
                                                        dictionary_learning, hook_z, openai, qwen_scope, goodfire, deepseek_r1,
                                                        gemma_scope_transcoder, gemma_scope_2_transcoder, circuit_tracer)}
# The weights file of each format inside an SAE's folder (the others are its config files).
_WEIGHTS = {"gemma_scope": PARAMS, "gemma_scope_2": PARAMS_ST, "gemma_scope_transcoder": PARAMS,
            "gemma_scope_2_transcoder": PARAMS_ST, "saelens": saelens.WEIGHTS, "llama_scope": llama_scope.WEIGHTS,
            "dictionary_learning": dictionary_learning.WEIGHTS}
_CONFIG_FILES = ("cfg.json", "config.json", "hyperparams.json", "_cfg.json")
GEMMA_2_2B_D_MODEL = 2304
_FORMATS_TEXT = ("a params.npz or params.safetensors (Gemma Scope), a SAELens folder (cfg.json + sae_weights.safetensors), "
                 "a Llama Scope folder (hyperparams.json + checkpoints/final.safetensors), a dictionary_learning folder "
                 "(ae.pt + config.json), a hook_z .pt with its _cfg.json, an OpenAI GPT-2 SAE .pt, a Qwen Scope layerL.sae.pt, "
                 "a Goodfire or DeepSeek-R1 SAE .pt/.pth, or a transcoder (Gemma Scope's params.npz or Gemma Scope 2's "
                 "params.safetensors under a transcoder folder, circuit-tracer's layer_L.safetensors)")


@dataclass(frozen=True)
class SAERef:
    """A resolved SAE reference: a local file, or a Hub repo + file; the registry entry it is, if any."""

    text: str
    path: Path | None = None
    repo: hub.HubRef | None = None
    filename: str | None = None
    fmt: str | None = None
    entry: reg.Entry | None = None
    matched_by: str | None = None
    candidates: tuple[reg.Entry, ...] = ()
    named_repo: str | None = None  # the registry repo a local path names, found in the registry or not

    @property
    def release(self) -> str | None:
        return self.entry.release if self.entry else None

    def describe(self) -> dict:
        d: dict = {"ref": self.text}
        if self.repo is not None:
            d.update(repo=self.repo.repo_id, file=self.filename, requested_revision=self.repo.revision)
        if self.entry is not None:
            d.update(release=self.entry.release, sae_id=self.entry.sae_id, registry_match=self.matched_by)
        return d


# ---------------------------------------------------------------- references -> registry entries

def _weights_in(folder: Path) -> tuple[Path, str] | None:
    for fmt, mod in (("gemma_scope_2_transcoder", gemma_scope_2_transcoder), ("gemma_scope_transcoder", gemma_scope_transcoder),
                     ("gemma_scope_2", gemma_scope_2), ("gemma_scope", gemma_scope), ("saelens", saelens),
                     ("llama_scope_r1", llama_scope_r1), ("llama_scope", llama_scope), ("dictionary_learning", dictionary_learning)):
        found = mod.detect(folder)
        if found is not None:
            return found, fmt
    return None


def _local_format(p: Path, ref: str) -> tuple[Path, str]:
    if p.is_dir():
        found = _weights_in(p)
        if found is None and (p / circuit_tracer.CONFIG).is_file() and any(circuit_tracer.layer_of(x) is not None for x in p.iterdir()):
            raise BadInput(f"{ref} holds a set of circuit-tracer transcoders, one per layer: pass one of them "
                           f"({ref.rstrip('/')}/layer_L.safetensors)")
        if found is None:
            raise BadInput(f"SAE directory {ref} has no params.npz or params.safetensors, nor any other SAE format featgraph "
                           f"reads: pass {_FORMATS_TEXT}")
        return found
    name = p.name
    if p.suffix == ".npz":
        return p, "gemma_scope_transcoder" if gemma_scope_transcoder.is_transcoder_path(str(p.parent.absolute())) else "gemma_scope"
    if circuit_tracer.detect_file(p):
        return p, "circuit_tracer"
    if name == saelens.WEIGHTS and (p.parent / saelens.CFG).is_file():
        return p, "saelens"
    if llama_scope_r1.detect(p.parent) == p:
        return p, "llama_scope_r1"
    if name == "final.safetensors" and p.parent.name == "checkpoints" and (p.parent.parent / llama_scope.HYPER).is_file():
        return p, "llama_scope"
    if p.suffix == ".safetensors":
        return p, "gemma_scope_2_transcoder" if gemma_scope_2_transcoder.is_transcoder_path(str(p.parent.absolute()) + "/") \
            else "gemma_scope_2"
    if p.suffix in (".pt", ".pth"):
        if name == dictionary_learning.WEIGHTS and (p.parent / dictionary_learning.CONFIG).is_file():
            return p, "dictionary_learning"
        if hook_z.detect(p) is not None:
            return p, "hook_z"
        if qwen_scope.detect(p) is not None:
            return p, "qwen_scope"
        return p, _single_file_format(p, ref)
    raise BadInput(f"SAE file {ref} is not in a format featgraph reads: pass {_FORMATS_TEXT}")


def _single_file_format(p: Path, ref: str) -> str:
    """A lone .pt/.pth without a config: which publisher's state dict it is, from its keys (read without running code)."""
    sd = torch_load(p, "SAE", ref)
    if goodfire.is_goodfire(sd):
        return "goodfire"
    if deepseek_r1.is_deepseek_r1(sd, p.name):
        return "deepseek_r1"
    return "openai"


def _strip_file(path: str) -> str:
    """A registry path from a file path inside an SAE's folder (params.npz, cfg.json, checkpoints/final.safetensors…)."""
    path = path.strip("/")
    for tail in ("checkpoints/final.safetensors", PARAMS, PARAMS_ST, CONFIG, "cfg.json", "sae_weights.safetensors",
                 "hyperparams.json", "ae.pt", "sparsity.safetensors"):
        if path == tail:
            return ""
        if path.endswith("/" + tail):
            return path[: -len(tail) - 1]
    return path


def _at(repo: str, path: str) -> tuple[reg.Entry, ...]:
    r = reg.get()
    found = r.at(repo, _strip_file(path))
    return found or r.at(repo, path.strip("/"))  # single-file SAEs: the path is the file


def _hub_repo_in(parts: list[str]) -> tuple[int, str] | None:
    """The last path component naming a registry repo — `models--OWNER--NAME` (the HF cache) or `NAME` (a
    `--local-dir` copy named after its repo) — as (index of the component after it, repo id)."""
    r = reg.get()
    names: dict[str, str] = {}
    for repo in sorted(r.repos):
        names.setdefault(repo.split("/", 1)[1], repo)
    for i in range(len(parts) - 1, -1, -1):
        c = parts[i]
        if c.startswith("models--"):
            repo = c[len("models--"):].replace("--", "/", 1)
            if repo in r.repos:
                j = i + 1
                if j + 1 < len(parts) and parts[j] == "snapshots":
                    j += 2
                return j, repo
        elif c in names:
            return i + 1, names[c]
    return None


def locate(text: str) -> tuple[tuple[reg.Entry, ...], str | None, str | None]:
    """The registry entries a path may be, how they were found, and the repo the path names (None: none).

    With a repo in the path (HF cache folder, or a folder named after the repo) the rest of the path is looked up
    in that repo. Otherwise the longest trailing part of the path that is a registry path gives candidates, which
    the SAE's files must confirm (load: the model its config names; Gemma 2 2B's d_in rule for Gemma Scope).
    """
    parts = [p for p in text.replace("\\", "/").split("/") if p and p != "."]
    hit = _hub_repo_in(parts)
    if hit is not None:
        j, repo = hit
        found = _at(repo, "/".join(parts[j:]))
        return found, (f"{repo} in the path" if found else None), repo
    by_path = reg.get().by_path
    for i in range(len(parts)):
        tail = "/".join(parts[i:])
        for cand in dict.fromkeys((_strip_file(tail), tail)):
            if cand in by_path:
                return by_path[cand], f"path {cand}", None
    return (), None, None


def resolve(ref: str, readable: bool = True) -> SAERef:
    """A path, Hub path or SAELens `release/sae_id` -> SAERef (nothing is downloaded). readable: refuse a registry
    SAE in a format featgraph does not read (False: describe it anyway, for `featgraph sae`)."""
    if not ref.strip():
        raise BadInput("the SAE reference is empty: pass a SAELens release/sae_id, a Hub path, or a local file or folder")
    p = Path(ref).expanduser()
    if p.exists():
        weights, fmt = _local_format(p, ref)
        found, how, named = locate(str(weights.absolute()))
        if not named:  # the HF cache's snapshot links point into blobs/: the path as given names the repo
            found2, how2, named2 = locate(str(weights.resolve()))
            if named2:
                found, how, named = found2, how2, named2
        best = _best(found) if named else None
        if best is not None and fmt in ("gemma_scope", "gemma_scope_2") and reg.format_of(best) in READERS:
            fmt = reg.format_of(best) or fmt  # a registry transcoder in a folder that does not say so
        return SAERef(ref, path=weights, fmt=fmt, entry=best, matched_by=how, candidates=() if named else found,
                      named_repo=named)
    r = reg.get()
    head, _, rest = ref.partition("/")
    if head in r.releases:
        return _resolve_release(ref, head, rest.strip("/"), readable)
    parts = ref.split("/")
    if ref.startswith((".", "/", "~")):
        raise BadInput(f"SAE {ref}: no such file or folder")
    if len(parts) < 3:
        close = difflib.get_close_matches(head, list(r.releases), n=1, cutoff=0.8)
        if close:
            raise BadInput(f"SAE {ref!r} not found: {head!r} is not a SAELens release; did you mean {close[0]!r}? "
                           f"(`featgraph sae {close[0]}/…`; registry: {r.source})")
        raise BadInput(
            f"SAE {ref!r} not found: pass {_FORMATS_TEXT}, a Hub path like google/gemma-scope-2b-pt-res/layer_12/width_16k/"
            "average_l0_82, or a SAELens release/sae_id like gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical, "
            "gpt2-small-res-jb/blocks.8.hook_resid_pre or llama_scope_lxr_8x/l15r_8x (`featgraph sae REF` shows what a "
            "reference resolves to)")
    repo = hub.HubRef.parse("/".join(parts[:2]))
    sub = "/".join(parts[2:]).rstrip("/")
    found = _at(repo.repo_id, sub)
    entry = _best(found)
    if entry is not None:
        entry_fmt = reg.format_of(entry)
        if entry_fmt is None and readable:
            raise BadInput(_unreadable(entry))
        return SAERef(ref, repo=repo, filename=_weights_file(entry), fmt=entry_fmt, entry=entry, matched_by="Hub path",
                      candidates=found)
    if sub.endswith((".npz", ".safetensors", ".pt", ".pth")):
        filename = sub
    elif repo.repo_id.split("/")[1].startswith("gemma-scope-2-") or re.search(r"(^|/)layer_\d+_width_\w+_l0_", sub):
        filename = f"{sub}/{PARAMS_ST}"
    else:
        filename = f"{sub}/{PARAMS}"
    return SAERef(ref, repo=repo, filename=filename, fmt=_format_of_name(f"{repo.repo_id}/{filename}"))


def _one_sae(found: Sequence[reg.Entry]) -> bool:
    """Entries that are one SAE under several names (X and X-canonical): same repo and path."""
    return len({(e.repo, e.path) for e in found}) == 1


def _best(found: Sequence[reg.Entry]) -> reg.Entry | None:
    """The entry naming one SAE: the one with a Neuronpedia id, from a `-canonical` release (SAELens' alias)."""
    if not found or not _one_sae(found):
        return None
    return sorted(found, key=lambda e: (e.neuronpedia is None, not e.release.endswith("-canonical"), e.release))[0]


def _same_model(a: str, b: str) -> bool:
    def norm(x: str) -> str:
        return x.rsplit("/", 1)[-1].lower().replace("-v3", "-3")
    return norm(a) == norm(b)


def corroborate(candidates: Sequence[reg.Entry], d_in: int | None = None, d_model: int | None = None,
                d_attn: int | None = None, model_name: str | None = None) -> tuple[reg.Entry | None, str | None]:
    """Which of the registry entries a path without its repo could be, as its files confirm: the model their config
    names (SAELens cfg.json / config.json model_name), or for Gemma Scope 2B npz files d_in against Gemma 2 2B's
    d_model (residual) or n_heads·d_head (attention output). (entry, why) or (None, None)."""
    if model_name:
        same = [e for e in candidates if _same_model(e.model, model_name)
                or (e.conversion == "gemma_3" and e.repo == gemma_scope_2_model_repo(model_name))]
        if _best(same):
            return _best(same), f"model {model_name} in the SAE's config"
    kind = "res" if d_in is not None and d_in == d_model else "att" if d_in is not None and d_in == d_attn else None
    if d_model == GEMMA_2_2B_D_MODEL and kind:
        same = [e for e in candidates if e.repo == f"google/gemma-scope-2b-pt-{kind}"]
        if _best(same):
            return _best(same), ("residual stream: d_in = d_model" if kind == "res" else "attention output: d_in = n_heads·d_head")
    return None, None


def _format_of_name(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1]
    if name == PARAMS and gemma_scope_transcoder.is_transcoder_path(filename):
        return "gemma_scope_transcoder"
    if name == PARAMS_ST and gemma_scope_2_transcoder.is_transcoder_path(filename):
        return "gemma_scope_2_transcoder"
    if circuit_tracer.layer_of(name) is not None:
        return "circuit_tracer"
    return {PARAMS: "gemma_scope", PARAMS_ST: "gemma_scope_2", "sae_weights.safetensors": "saelens", "ae.pt": "dictionary_learning",
            "final.safetensors": "llama_scope"}.get(name, "gemma_scope" if name.endswith(".npz") else
                                                    "gemma_scope_2" if name.endswith(".safetensors") else "openai")


def _weights_file(e: reg.Entry) -> str:
    files = reg.files(e)
    return next(f for f in reversed(files) if not f.endswith((".json", ".yaml")))


def _unreadable(e: reg.Entry) -> str:
    return (f"{e.ref} is in SAELens' registry with conversion_func {e.conversion}, a format featgraph does not read "
            f"(it reads {', '.join(sorted(set(v for v in reg.FORMATS.values())))}): `featgraph sae {e.ref}` shows its files")


def _resolve_release(ref: str, release: str, sae_id: str, readable: bool = True) -> SAERef:
    r = reg.get()
    saes = r.releases[release]
    e = saes.get(sae_id)
    if e is None:  # SAELens' transcoder ids carry their folder; a folder-less id names the same SAE
        e = next((x for x in saes.values() if x.sae_id.rsplit("/", 1)[-1] == sae_id.rsplit("/", 1)[-1]
                  and x.sae_id.endswith(sae_id)), None)
    if e is None and re.fullmatch(r"layer_\d+/?", sae_id):  # a layer's folder holding the release's one SAE of that layer
        under = [x for x in saes.values() if x.sae_id.startswith(sae_id.rstrip("/") + "/")]  # names it (atlas templates:
        # gemma-scope-2b-pt-transcoders/layer_{layer}, whose L0 differs per layer)
        e = under[0] if len(under) == 1 else None
    if e is None:
        ids = list(saes)
        if not sae_id:
            raise BadInput(f"{release} is a SAELens release of {len(ids)} SAEs: name one, as {release}/{ids[0]} "
                           f"(`featgraph sae {release}/{ids[0]}`; registry: {r.source})")
        close = difflib.get_close_matches(sae_id, ids, n=3, cutoff=0.6)
        like = ", ".join(close or ids[:3]) + ("" if close or len(ids) <= 3 else ", …")
        elsewhere = sorted(rel for rel, ss in r.releases.items() if sae_id in ss and rel != release)
        hint = f"; {'closest' if close else 'e.g.'}: {like}" + (f"; it is an SAE of {', '.join(elsewhere[:3])}" if elsewhere else "")
        raise BadInput(f"SAE id {sae_id!r} is not in SAELens' release {release} ({len(ids)} SAEs{hint}; "
                       f"registry: {r.source})")
    fmt = reg.format_of(e)
    if fmt is None and readable:
        raise BadInput(_unreadable(e))
    return SAERef(ref, repo=hub.HubRef(e.repo), filename=_weights_file(e), fmt=fmt, entry=e, matched_by="release/sae_id")


# ---------------------------------------------------------------- Neuronpedia ids

_LAYOUT_RE = re.compile(r"(?:^|/)layer_(?P<layer>\d+)/width_(?P<width>\w+)/average_l0_(?P<l0>\d+)(?:/|$)")
_GS2_LAYOUT_RE = re.compile(r"(?:^|/)(?P<folder>resid_post|attn_out|mlp_out|transcoder)(?P<all>_all)?/"
                            r"(?P<id>layer_(?P<layer>\d+)_width_(?P<width>\d+[km])_l0_(?P<l0>small|medium|big)(?P<suffix>\w*))(?:/|$)")
_GS2_SITE = {"resid_post": "res", "attn_out": "att", "mlp_out": "mlp", "transcoder": "transcoder"}
_GS_KIND = {"res": "res", "att": "att", "mlp": "mlp", "transcoders": "transcoder"}


@dataclass(frozen=True)
class Naming:
    """How an SAE's features are named: Neuronpedia's source id when the registry has one, else featgraph's."""

    neuronpedia_id: str | None
    neuronpedia_model: str | None
    how: str | None
    fallback_id: str | None = None
    note: str | None = None
    layer: int | None = None


def _entry_naming(e: reg.Entry, how: str) -> Naming:
    d = reg.describe(e)
    source, model, layer = d["neuronpedia_id"], d["neuronpedia_model"], d["layer"]
    if source:
        return Naming(source, model, f"SAELens registry {e.ref} ({how})", layer=layer)
    if e.neuronpedia:  # an id the registry gives another SAE
        return Naming(None, None, None, _fallback_name(e), d["neuronpedia_note"], layer)
    fb = _fallback_name(e)
    hosted: dict[str, set[int]] = {}
    for x in reg.get().entries():
        if x.model == e.model and x.neuronpedia:
            hosted.setdefault(x.release, set()).add(reg.describe(x)["layer"] if reg.hook(x)[0] else -1)
    listed = "; ".join(f"{rel}: layers {', '.join(str(v) for v in sorted(ls) if v >= 0)}" for rel, ls in sorted(hosted.items())[:4])
    note = (f"Neuronpedia has no source for {e.ref}: SAELens' registry lists none (it lists some for {e.model}: {listed})"
            if hosted else f"Neuronpedia has no source for {e.ref}: SAELens' registry lists none, nor any for {e.model}")
    return Naming(None, None, None, fb, note, layer)


def _fallback_name(e: reg.Entry) -> str:
    """featgraph's name for a registry SAE Neuronpedia does not host (docs/ids.md)."""
    m = _LAYOUT_RE.search(e.path)
    if m and e.conversion in ("gemma_2", "gemma_2_transcoder"):
        kind = next((v for k, v in _GS_KIND.items() if e.repo.endswith(f"-{k}")), "res")
        return f"{m['layer']}-gemmascope-{kind}-{m['width']}__l0-{m['l0']}"
    g = _GS2_LAYOUT_RE.search(e.path)
    if g and e.conversion == "gemma_3":
        return f"{g['layer']}-gemmascope-2-{g['folder']}{g['all'] or ''}-{g['width']}-l0_{g['l0']}{g['suffix']}"
    return re.sub(r"[^\w.\-]+", ".", f"{e.release}.{e.sae_id}")


def naming(ref: SAERef, d_in: int | None = None, d_model: int | None = None, d_attn: int | None = None,
           model_name: str | None = None) -> Naming:
    """The Neuronpedia naming of a resolved SAE (rules in docs/ids.md)."""
    if ref.entry is not None:
        return _entry_naming(ref.entry, ref.matched_by or "")
    e, why = corroborate(ref.candidates, d_in, d_model, d_attn, model_name)
    if e is not None:
        return _entry_naming(e, f"{ref.matched_by}; {why}")
    text = f"{ref.repo.repo_id}/{ref.filename}" if ref.repo else str(ref.path or ref.text)
    return _layout_naming(text, d_in, d_model, d_attn, ref.named_repo or (ref.repo.repo_id if ref.repo else None))


def _layout_naming(text: str, d_in: int | None, d_model: int | None, d_attn: int | None, repo: str | None = None) -> Naming:
    """A Gemma Scope layout the registry does not list (another L0 on disk, a renamed folder): featgraph's name,
    the kind from the Gemma Scope repo the path names, else from d_in on Gemma 2 2B."""
    text = text.replace("\\", "/")
    m = _LAYOUT_RE.search(text)
    if m:
        kind = "res" if d_in is not None and d_in == d_model else "att" if d_in is not None and d_in == d_attn else None
        named = re.fullmatch(r"google/gemma-scope-\d+b-(?:pt|it)-(res|att|mlp|transcoders)", repo or "")
        if named:
            kind = _GS_KIND[named[1]]
            name = f"{m['layer']}-gemmascope-{kind}-{m['width']}__l0-{m['l0']}"
            return Naming(None, None, None, name, f"SAELens' registry lists no SAE at {repo}/layer_{m['layer']}/"
                          f"width_{m['width']}/average_l0_{m['l0']}, so Neuronpedia has no source for it", int(m["layer"]))
        if d_model == GEMMA_2_2B_D_MODEL and kind and "gemma-scope-" not in text[: m.start()]:
            name = f"{m['layer']}-gemmascope-{kind}-{m['width']}__l0-{m['l0']}"
            return Naming(None, None, None, name, f"SAELens' registry lists no Gemma Scope 2B {kind} SAE at "
                          f"layer_{m['layer']}/width_{m['width']}/average_l0_{m['l0']}, so Neuronpedia has no source for it",
                          int(m["layer"]))
        return Naming(None, None, None, layer=int(m["layer"]))
    g = _GS2_LAYOUT_RE.search(text)
    if g:
        name = f"{g['layer']}-gemmascope-2-{g['folder']}{g['all'] or ''}-{g['width']}-l0_{g['l0']}{g['suffix']}"
        return Naming(None, None, None, name, f"SAELens' registry lists no Neuronpedia source for Gemma Scope 2's "
                      f"{g['folder']}{g['all'] or ''}/{g['id']} of this model", int(g["layer"]))
    return Naming(None, None, None)


def neuronpedia_source(text: str, d_in: int | None = None, d_model: int | None = None,
                       d_attn: int | None = None) -> tuple[str | None, int | None, str | None]:
    """(Neuronpedia source id, layer, how it was found) of the SAE a path names; None where the registry has none."""
    found, how, named = locate(text)
    n = naming(SAERef(text, entry=_best(found) if named else None, matched_by=how, candidates=() if named else found,
                      named_repo=named), d_in, d_model, d_attn)
    return n.neuronpedia_id, n.layer, n.how


def gemma_scope_2_model_repo(model_name: str) -> str | None:
    """google/gemma-3-1b-pt -> google/gemma-scope-2-1b-pt (SAELens' gemma_3 loader maps the other way; the 270m
    model has no -pt on the Hub)."""
    m = re.search(r"gemma-(?:3|v3)-(\d+[mb])(?:-(pt|it))?$", model_name)
    return f"google/gemma-scope-2-{m[1]}-{m[2] or 'pt'}" if m else None


def site_of_hook(hook: str) -> str | None:
    """What an SAE reads, from its hook point: res, att (before o_proj), attn_out (o_proj's output), mlp, transcoder.

    Gemma Scope 2's config.json names transformers modules (`model.layers.L.output`, `model.layers.L.self_attn.o_proj.input`,
    `…post_feedforward_layernorm.output`, `…pre_feedforward_layernorm.output`); SAELens names TransformerLens hooks.
    """
    rules = (("self_attn.o_proj.input", "att"), ("pre_feedforward_layernorm", "transcoder"), ("post_feedforward_layernorm", "mlp"))
    for needle, site in rules:
        if needle in hook:
            return site
    return reg.site_of(hook) or ("res" if re.fullmatch(r"model\.layers\.\d+\.output", hook) else None)


def _hook_layer(hook: object) -> int | None:
    m = re.search(r"(?:layers|blocks)\.(\d+)\.", hook) if isinstance(hook, str) else None
    return int(m[1]) if m else None


# ---------------------------------------------------------------- loading

def check_d_in(role: str, text: str, d_in: int, expect: int | Sequence[int] | None) -> None:
    """A one-line BadInput when an SAE's input size is none of those the model offers."""
    allowed = (expect,) if isinstance(expect, int) else tuple(expect or ())
    if not allowed or d_in in allowed:
        return
    what = f"the model's d_model is {allowed[0]}" + (f" and its n_heads·d_head {allowed[1]}" if len(allowed) > 1 else "")
    raise BadInput(f"{role}{' ' + text if text else ''} reads vectors of size {d_in} but {what}: pick an SAE of this model")


def _fetch(r: SAERef, role: str) -> Path:
    """The weights file on disk, with the SAE's config files beside it (Hub: through its cache)."""
    if r.path is not None:
        return r.path
    assert r.repo is not None and r.filename is not None
    fix = f"pass the {role} as a local folder or file"
    configs = [f for f in (reg.files(r.entry) if r.entry else ()) if f.endswith((".json", ".yaml")) and f != r.filename]
    if r.entry is None and r.fmt in ("gemma_scope_2", "gemma_scope_2_transcoder"):
        configs = [str(Path(r.filename).parent / CONFIG)]
    for c in configs:
        try:
            hub.download(r.repo, c, fix)
        except FeatgraphError:
            if r.fmt not in ("gemma_scope_2", "gemma_scope_2_transcoder", "circuit_tracer"):  # SAELens reads these without
                raise  # their config files too (Gemma Scope 2's config.json; the Qwen3 14B transcoders have no config.yaml)
    return hub.download(r.repo, r.filename, fix)


def load(ref: str | SAERef, parts: tuple[str, ...] = KEYS, expect_d_in: int | Sequence[int] | None = None,
         role: str = "SAE", d_attn: int | None = None, checksum: bool = True) -> SAE:
    """Load the arrays `parts` of an SAE after checking every key and shape.

    expect_d_in: the input sizes allowed (the model's d_model first; an output SAE may also read the heads'
    concatenated outputs, n_heads·d_head). d_attn: that size, for naming an attention-output SAE by its d_in.
    """
    r = ref if isinstance(ref, SAERef) else resolve(ref)
    path = _fetch(r, role)
    reader = READERS[r.fmt or "gemma_scope"]
    loaded = reader.read(path, parts, role, r.text, r.entry.norm_scaling_factor if r.entry else None)
    check_d_in(role, r.text, loaded.d_in, expect_d_in)
    finite(role, r.text, loaded.arrays)
    d_model = expect_d_in if isinstance(expect_d_in, int) else next(iter(expect_d_in or ()), None)
    model_name = loaded.meta.get("model_name") or (loaded.meta.get("config") or {}).get("model_name")
    if r.entry is None and r.path is not None and r.fmt in ("gemma_scope_2", "gemma_scope_2_transcoder") and model_name:  # config.json names the repo
        g = _GS2_LAYOUT_RE.search(str(r.path).replace("\\", "/"))
        repo = gemma_scope_2_model_repo(str(model_name))
        if g and repo and _best(_at(repo, g.group(0).strip("/"))):
            r = SAERef(r.text, path=r.path, fmt=r.fmt, entry=_best(_at(repo, g.group(0).strip("/"))),
                       matched_by=f"{repo} from config.json's model_name {model_name}")
    if r.entry is None and r.candidates:
        e, why = corroborate(r.candidates, loaded.d_in, d_model, d_attn, model_name)
        if e is not None:
            r = SAERef(r.text, path=r.path, repo=r.repo, filename=r.filename, fmt=r.fmt, entry=e,
                       matched_by=f"{r.matched_by}; {why}", candidates=r.candidates)
    n = naming(r, loaded.d_in, d_model, d_attn, model_name)
    info_ = reg.describe(r.entry) if r.entry else {}
    hook = loaded.meta.get("hook") or info_.get("hook") or (openai.hook_of(str(r.path)) if r.fmt == "openai" else None)
    hf_hook = loaded.meta.get("hf_hook")
    site = (site_of_hook(hook) if hook else None) or (site_of_hook(hf_hook) if isinstance(hf_hook, str) else None) \
        or info_.get("site")
    layer = _hook_layer(hook) if hook else (_hook_layer(hf_hook) if hf_hook else None)
    if layer is None:
        layer = n.layer
    inp, outp = reg.pairing(hook) if hook else (None, None)
    mfpk = dict(loaded.meta.get("model_from_pretrained_kwargs") or {}) | dict(info_.get("model_from_pretrained_kwargs") or {})
    source = r.describe() | {
        "revision": hub.snapshot_revision(path) if r.repo else None,
        "sha256": sha256_cached(path) if checksum else None,
        "format": r.fmt,
        "neuronpedia_id": n.neuronpedia_id,
        "neuronpedia_model": n.neuronpedia_model,
        "id_source": n.how if n.neuronpedia_id else None,
        "layer": layer, "site": site, "hook": hook,
        "hook_from": loaded.meta.get("hook_from") or info_.get("hook_from") if hook else None,
        "input_of_layer": inp, "output_of_layer": outp,
        "d_in": loaded.d_in, "d_sae": loaded.d_sae,
        "model_from_pretrained_kwargs": mfpk,
    }
    if r.entry is not None:
        source["registry"] = info_["registry"]
        source["config_overrides"] = r.entry.config_overrides
    if n.neuronpedia_id is None and n.fallback_id:
        how = f"{n.note}: not on Neuronpedia, named by featgraph"
        source |= {"fallback_id": n.fallback_id, "fallback_how": how, "id_note": n.note}
    source |= {k: v for k, v in loaded.meta.items() if k not in ("hook", "hook_from", "model_from_pretrained_kwargs", "hf_hook")}
    return SAE(d_in=loaded.d_in, d_sae=loaded.d_sae, source=source, **loaded.arrays)


def info(ref: str) -> dict:
    """What featgraph would use for `ref`, without downloading anything (`featgraph sae`; docs/formats.md)."""
    r = resolve(ref, readable=False)
    if r.entry is not None:
        d = reg.describe(r.entry)
        d = {"input": ref, "matched_by": r.matched_by} | d
        if r.path is not None:
            d |= _local_record(r)
        return d
    if r.path is not None:
        return {"input": ref, "matched_by": None, "in_registry": False,
                "candidates": [e.ref for e in r.candidates][:10]} | _local_record(r)
    return {"input": ref, "matched_by": None, "in_registry": False, "repo": r.repo.repo_id if r.repo else None,
            "files": [r.filename], "format": r.fmt, "hook": None, "site": None, "layer": None, "d_sae": None,
            "d_sae_from": "the SAE's files say; not downloaded", "neuronpedia_id": None,
            "neuronpedia_note": f"{r.repo.repo_id if r.repo else ref} {r.filename} is not in SAELens' registry "
                                f"({reg.get().source}), so no Neuronpedia source is known"}


def _local_record(r: SAERef) -> dict:
    sae = load(r, parts=(), checksum=False)
    s = sae.source
    keep = ("format", "hook", "hook_from", "site", "layer", "input_of_layer", "output_of_layer", "d_in", "d_sae",
            "neuronpedia_id", "neuronpedia_model", "fallback_id", "id_note", "model_from_pretrained_kwargs", "architecture",
            "transcoder")
    out = {k: s.get(k) for k in keep if k in s}
    out["path"] = str(r.path)
    out["d_sae_from"] = "the SAE's files"
    if not s.get("neuronpedia_id"):
        out["neuronpedia_note"] = s.get("id_note") or "SAELens' registry has no entry for this file, so no Neuronpedia source is known"
    return out

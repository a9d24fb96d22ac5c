"""`featgraph.atlas()`: every chosen layer of a model, QK and OV of every head, in one graph. (The module has another
name than the function so that `featgraph.atlas` stays the function once the module is imported.)

Layer L pairs the residual SAE of layer L−1 (keys, queries and values) with the residual SAE of layer L (OV
outputs) — exactly `extract`'s pairing — so the features of one SAE are the same nodes (the same ids) whether
they are layer L's OV outputs or layer L+1's keys, queries and values, and Cypher can follow paths across layers.

On disk (featgraph.runs.atlasdir; docs/run-directory.md, "The atlas"): each layer is an `extract` run in
`DIR/layers/L{layer}`, written whole or not at all (and resumed per matrix inside a layer by featgraph.runs.resume);
the combined `edges.parquet`, `features.parquet` and `manifest.json` of DIR are rebuilt from the finished layers
when the call ends (finished, failed or interrupted) and, while it runs, after a finished layer at most every
COMBINE_EVERY_S seconds (rebuilding them after every layer costs a share of the work that grows with the layers), so
`open_run(DIR)` is one run holding them all. An interrupted atlas continues where it
stopped: finished layers are skipped once their manifests are checked against the request. Memory is one layer's
work at a time plus the combined edge table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from featgraph.api.compute import DEFAULT_MODEL
from featgraph.core.progress import ProgressFactory
from featgraph.core.schema import CIRCUITS, normalise_circuit
from featgraph.errors import BadInput, BadValue, FeatgraphWarning
from featgraph.runs import atlasdir
from featgraph.runs.files import holds_output
from featgraph.runs.manifest import Manifest

_LAYERS_RE = re.compile(r"^\d+(-\d+)?$")
COMBINE_EVERY_S = 300.0  # while an atlas runs, its combined run is rebuilt at most this often (and when it ends)


def parse_layers(text: str) -> tuple[int, ...]:
    """`1-25`, `1,5,7-9` -> sorted distinct layers; anything else is a BadValue."""
    bad = BadValue("layers", text, "must be layers and ranges like 1-25 or 1,5,7-9")
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not _LAYERS_RE.match(p) for p in parts):
        raise bad
    out: set[int] = set()
    for p in parts:
        lo, _, hi = p.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise BadValue("layers", text, f"has the range {p} running backwards: write {b}-{a}")
        out.update(range(a, b + 1))
    return tuple(sorted(out))


SaeSpec = str | Path | Callable[[int], Any] | None


def _template(spec: Any, param: str) -> Callable[[int], Any] | None:
    """A template `...{layer}...` or a callable layer -> value, as a function (None stays None)."""
    if spec is None or callable(spec):
        return spec
    text = str(spec)
    if "{layer}" not in text:
        raise BadValue(param, text, "must contain {layer} (e.g. saes/layer_{layer}/width_16k/average_l0_71/params.npz) "
                       "or be a function of the layer")
    try:
        text.format(layer=0)
    except (KeyError, IndexError, ValueError):
        raise BadValue(param, text, "may hold no braces but {layer}") from None
    return lambda layer: text.format(layer=layer)


@dataclass(frozen=True)
class _Request:
    """What every layer of the atlas is computed with (the same for all layers)."""

    model: Any
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    circuits: tuple[str, ...]
    top_k: int | None
    min_abs: float | None
    per_source_k: int | None
    attn_scale: bool
    rope_offset: int
    model_id: str | None
    sae: Callable[[int], Any]
    sae_id: Callable[[int], Any] | None

    def describe(self) -> dict:
        return {"model": str(self.model) if isinstance(self.model, (str, Path)) else "<object>", "layers": list(self.layers),
                "heads": list(self.heads), "circuits": list(self.circuits), "top_k": self.top_k, "min_abs": self.min_abs,
                "per_source_k": self.per_source_k, "attn_scale": self.attn_scale, "rope_offset": self.rope_offset}

    def mismatch(self, layer: int, m: Manifest) -> str | None:
        """How the finished run of `layer` differs from this request (None: it is what would be computed)."""
        sel, conv = m.selection or {}, m.conventions if isinstance(m.conventions, dict) else {}
        rope = int((conv.get("rope") or {}).get("offset", 0) or 0)
        checks = [
            ("the model", (m.model or {}).get("ref"), self.model, True),
            ("the input SAE", (m.sae_in or {}).get("ref"), self.sae(layer - 1), True),
            ("the output SAE", (m.sae_out or {}).get("ref"), self.sae(layer) if "OV" in self.circuits else None, True),
            ("heads", list(m.heads), list(self.heads), False),
            ("circuits", list(m.circuits), list(self.circuits), False),
            ("top_k", sel.get("top_k"), self.top_k, False),
            ("min_abs", sel.get("min_abs"), self.min_abs, False),
            ("per_source_k", sel.get("per_source_k"), self.per_source_k, False),
            ("attn_scale", conv.get("attn_scale") is not None, self.attn_scale, False),
            ("rope_offset", rope, self.rope_offset, False),
        ]
        if self.model_id is not None:
            checks.append(("model_id", (m.model or {}).get("neuronpedia_id"), self.model_id, False))
        if self.sae_id is not None:
            checks.append(("the input SAE's id", (m.sae_in or {}).get("neuronpedia_id"), self.sae_id(layer - 1), False))
            if "OV" in self.circuits:
                checks.append(("the output SAE's id", (m.sae_out or {}).get("neuronpedia_id"), self.sae_id(layer), False))
        for what, have, want, is_ref in checks:
            if is_ref:
                if not isinstance(want, (str, Path)):
                    continue  # an object in memory: nothing on disk to compare it with
                if not _same_ref(have, want):
                    return f"{what} {have!r}, not {str(want)!r}"
            elif have != want:
                return f"{what} {have!r}, not {want!r}"
        return self._changed(layer, m)

    def _changed(self, layer: int, m: Manifest) -> str | None:
        """Which input named as before has other contents now than the layer was made from (sha256 recorded in
        its manifest; a Hub file not in the cache, or a run made before the record existed, is not checked)."""
        saes = [("the input SAE", m.sae_in, self.sae(layer - 1))]
        if "OV" in self.circuits:
            saes.append(("the output SAE", m.sae_out, self.sae(layer)))
        for what, rec, want in saes:
            recorded = (rec or {}).get("sha256")
            if recorded and isinstance(want, (str, Path)) and _sae_digest(str(want)) not in (None, recorded):
                return f"{what} {str(want)!r} as it was before it changed (its sha256 is not the one recorded)"
        recorded = (m.model or {}).get("weights_sha256")
        if recorded and isinstance(self.model, (str, Path)):
            from featgraph.api.compute import weights_digest
            from featgraph.load import model as model_io

            if weights_digest(model_io.load_attention(str(self.model), layer)) != recorded:
                return (f"the model {str(self.model)!r} as it was before it changed (layer {layer}'s attention weights differ "
                        "from those recorded)")
        return None


def _sae_digest(ref: str) -> str | None:
    """sha256 of the file an SAE reference names now: a local file, or a Hub file already in the cache."""
    from featgraph.load import sae as sae_io

    r = sae_io.resolve(ref)
    path = r.path
    if path is None and r.repo is not None and r.filename:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(r.repo.repo_id, r.filename, revision=r.repo.revision)
        path = Path(cached) if isinstance(cached, str) else None
    if path is None:
        return None
    from featgraph.runs.files import sha256_cached

    return sha256_cached(Path(path))


def _same_ref(have: object, want: str | Path) -> bool:
    if have is None:
        return False
    if str(have) == str(want):
        return True
    a, b = Path(str(have)).expanduser(), Path(want).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


@contextlib.contextmanager
def _atlas_warnings() -> Iterator[None]:
    """Re-issue extract's warnings in the atlas's terms: its SAE ids come from --sae-id-template, not --sae-in-id."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for w in caught:
            text = str(w.message)
            for flag in ("sae_in_id", "sae_out_id"):
                text = text.replace(f"--{flag.replace('_', '-')} ({flag}= in Python)",
                                    "--sae-id-template (sae_id_template= in Python)")
            warnings.warn_explicit(text, w.category, w.filename, w.lineno)


@holds_output  # one process at a time per atlas: a second one stops with one line (runs.files.output_lock)
def atlas(
    model: Any = DEFAULT_MODEL,
    layers: Iterable[int] | str = range(1, 26),
    out: str | Path | None = None,
    heads: Sequence[int] | None = None,
    circuits: Sequence[str] = CIRCUITS,
    top_k: int | None = 1000,
    min_abs: float | None = None,
    per_source_k: int | None = None,
    precision: str = "auto",
    attn_scale: bool = False,
    rope_offset: int = 0,
    device: str = "auto",
    block_mb: int | None = None,
    model_id: str | None = None,
    sae_template: SaeSpec = None,
    sae_id_template: str | Callable[[int], str] | None = None,
    labels: bool = True,
    label_sources: Sequence[str | Path] = (),
    force: bool = False,
    progress: ProgressFactory | None = None,
    ray: bool | str | None = None,
    heads_per_task: int | None = None,
    cpus_per_task: int = 1,
):
    """Every head of every layer in `layers`, QK and OV, in one run directory `out`; returns its `Run`.

    Layer L reads the residual SAE of layer L−1 (keys, queries, values) and writes to that of layer L (OV outputs).
    sae_template: where the SAE of a layer is — a template with `{layer}` (a local path, a Hub path or a SAELens-style id,
    e.g. `gemma-scope-2-1b-pt-res-all/layer_{layer}_width_16k_l0_small`) or a function layer -> reference or SAE
    object; None: Gemma Scope's canonical 16k residual SAEs (Gemma 2 2B only). sae_id_template: the Neuronpedia source id
    of a layer's SAE, the same way (None: inferred as `extract` does). The other parameters are `extract`'s,
    applied to every layer. Resumes an interrupted atlas in `out` (its finished layers must match the request);
    `force` starts it over.

    ray: run the layers as Ray tasks (featgraph.api.ray_atlas; needs `featgraph[ray]`): True or "local" starts a
    local Ray runtime on this machine, an address ("auto", "HOST:PORT", "ray://HOST:PORT") joins that cluster. Each
    (layer, head set) is one task asking for a GPU (device cuda, or auto on a cluster with GPUs) or `cpus_per_task`
    CPUs; `heads_per_task` sizes the head sets (None: a layer per task, split further when the cluster runs more
    tasks at once than there are layers). The model and SAEs must then be references every node can read.
    The atlas written is the same as without Ray.
    """
    from featgraph.load import neuronpedia

    if out is None:
        raise BadInput("atlas needs out: the directory that holds every layer's run and the combined graph")
    out = Path(out)
    wanted = parse_layers(layers) if isinstance(layers, str) else tuple(sorted({int(x) for x in layers}))
    if not wanted:
        raise BadValue("layers", "", "must name at least one layer, e.g. 1-25")
    try:
        which = tuple(dict.fromkeys(normalise_circuit(c) for c in circuits))
    except ValueError as e:
        raise BadValue("circuits", e.args[0], "must be qk or ov") from None
    if not which:
        raise BadValue("circuits", "", "must be qk, ov or both")
    sae_fn, id_fn = _template(sae_template, "sae_template"), _template(sae_id_template, "sae_id_template")

    # Everything that can be checked is checked before anything is written.
    config = _model_config(model)
    if wanted[0] < 1:
        raise BadValue("layers", wanted[0], "has no residual SAE before it (layer L reads the SAE of layer L−1): "
                       "start at layer 1", value_first=True)
    if wanted[-1] >= config.n_layers:
        raise BadValue("layers", wanted[-1], f"is beyond the model's layers 0..{config.n_layers - 1}", value_first=True)
    for L in wanted:  # a layer featgraph refuses (Gemma 4's that reuse another layer's keys) is refused now
        config.for_layer(L, str(model) if isinstance(model, (str, Path)) else "the model")
    from featgraph.api.reload import check_heads

    head_list = check_heads(tuple(heads) if heads is not None else None, config.n_heads, wanted[0])
    if sae_fn is None:
        sae_fn = _default_saes(model, config, model_id)
    req = _Request(model, wanted, head_list, which, top_k, min_abs, per_source_k, attn_scale, rope_offset, model_id, sae_fn, id_fn)
    _check_sae_refs(req, wanted)
    label_table = neuronpedia.read_labels([Path(s) for s in label_sources]) if (labels and label_sources) else None
    cluster = None
    if ray is not None and ray is not False:
        from featgraph.api import ray_atlas

        req = _for_ray(req, wanted)
        cluster = ray_atlas.connect(ray, device, cpus_per_task)  # no GPU for --device cuda: an error, nothing written
    elif heads_per_task is not None:
        raise BadInput("heads_per_task sizes the Ray tasks of an atlas: pass ray (--ray) too")
    try:
        return _build(req, out, force, precision, device, block_mb, labels, label_table, progress, cluster, heads_per_task)
    finally:
        if cluster is not None:
            cluster.close()


def _build(req: _Request, out: Path, force: bool, precision: str, device: str, block_mb: int | None, labels: bool,
           label_table: pd.DataFrame | None, progress: ProgressFactory | None, cluster: Any, heads_per_task: int | None):
    """The atlas in `out` once every check has passed: its finished layers kept, the others computed (in this
    process, or as Ray tasks on `cluster`) and each written whole, the combined run rebuilt (_Combined)."""
    from featgraph.api.run import Run
    from featgraph.runs import rundir
    from featgraph.runs.files import check_target, marker_kind

    wanted, head_list, which = req.layers, req.heads, req.circuits
    engine = cluster.describe() if cluster is not None else {"name": "process"}
    if marker_kind(out) == atlasdir.KIND:
        if force:
            atlasdir.clear(out)
        else:
            for L, m in atlasdir.finished(out).items():
                why = req.mismatch(L, m)
                if why is not None:
                    raise BadInput(f"layer {L} of the atlas in {out} was computed with {why}: pass the same settings to "
                                   "continue it, --force (force=True) to compute it again, or choose another --out")
    else:
        check_target(out, force, kind=atlasdir.KIND)  # refuses an existing run, report or foreign folder
        atlasdir.create(out)
    (out / atlasdir.LAYERS_DIR).mkdir(exist_ok=True)
    atlasdir.remove_leftovers(out)

    done = atlasdir.finished(out)
    todo = [L for L in wanted if L not in done]
    per_layer = len(head_list) * len(which)
    overall = progress(f"atlas: {len(wanted)} layers × {len(head_list)} heads ({', '.join(which)})",
                       len(wanted) * per_layer) if progress else None
    if overall is not None and len(wanted) > len(todo):
        overall((len(wanted) - len(todo)) * per_layer)
    ids = _known_ids(done)
    atlasdir.combine(out, done, req.circuits, req.describe())  # what an interrupted rebuild left is made whole first
    combined = _Combined(out, req, engine)
    try:
        if cluster is not None:
            _ray_layers(cluster, req, out, todo, ids, {"precision": precision, "block_mb": block_mb}, labels, label_table,
                        progress, overall, heads_per_task, combined)
        else:
            _process_layers(req, out, todo, ids, force, precision, device, block_mb, labels, label_table, progress,
                            overall, combined)
    except BaseException:  # failed or interrupted: the combined run holds every finished layer, and the error is said
        try:
            combined.now()
        except Exception as e:  # the first error is the one to report
            warnings.warn(f"the combined run of {out} was not rebuilt ({e}); the next `atlas` call into it rebuilds it",
                          FeatgraphWarning, stacklevel=2)
        raise
    combined.now()  # finished
    done = atlasdir.finished(out)
    _check_shared_ids(done)
    atlas_run = Run.open(out)
    from featgraph.runs.files import DB_NAME

    if todo and (out / DB_NAME).exists():  # the store was built from fewer layers: rebuild it
        atlas_run.load()
    if todo:  # found over fewer layers; `featgraph tetrads DIR` makes it again
        (out / rundir.TETRADS).unlink(missing_ok=True)
    neo = (atlas_run.manifest.stores or {}).get("neo4j")
    if todo and neo:
        warnings.warn(f"the copy of this atlas loaded into Neo4j at {neo.get('uri')} on {neo.get('loaded')} lacks the layers "
                      f"computed since: refresh it with `featgraph load {out} --neo4j`", FeatgraphWarning, stacklevel=2)
    return atlas_run


class _Combined:
    """The atlas's combined run, rebuilt from the finished layers (atlasdir.combine): `after_layer` at most every
    COMBINE_EVERY_S seconds, `now` when the call ends."""

    def __init__(self, out: Path, req: _Request, engine: dict):
        import time

        self.out, self.req, self.engine, self.clock = out, req, engine, time.monotonic
        self.last, self.stale = self.clock(), False

    def after_layer(self) -> None:
        self.stale = True
        if self.clock() - self.last >= COMBINE_EVERY_S:
            self.now()

    def now(self) -> None:
        if self.stale:
            atlasdir.combine(self.out, atlasdir.finished(self.out), self.req.circuits, self.req.describe(), engine=self.engine)
            self.last, self.stale = self.clock(), False


def _process_layers(req: _Request, out: Path, todo: Sequence[int], ids: dict[int, str], force: bool, precision: str,
                    device: str, block_mb: int | None, labels: bool, label_table: pd.DataFrame | None,
                    progress: ProgressFactory | None, overall, combined: _Combined) -> None:
    """Every layer of `todo` in this process, one `extract` run each, written whole."""
    from featgraph.api.compute import extract

    model, head_list, which, sae_fn, id_fn = req.model, req.heads, req.circuits, req.sae, req.sae_id
    top_k, min_abs, per_source_k, attn_scale, rope_offset = req.top_k, req.min_abs, req.per_source_k, req.attn_scale, req.rope_offset
    model_id = req.model_id
    per_layer = len(head_list) * len(which)
    for L in todo:
        given_in = id_fn(L - 1) if id_fn else ids.get(L - 1)
        given_out = (id_fn(L) if id_fn else ids.get(L)) if "OV" in which else None
        with _atlas_warnings():
            run = extract(model=model, layer=L, sae_in=sae_fn(L - 1), sae_out=sae_fn(L) if "OV" in which else None,
                          heads=head_list, circuits=which, top_k=top_k, min_abs=min_abs, per_source_k=per_source_k,
                          precision=precision, attn_scale=attn_scale, rope_offset=rope_offset, device=device,
                          block_mb=block_mb, model_id=model_id, sae_in_id=given_in, sae_out_id=given_out,
                          out=atlasdir.layer_dir(out, L), labels=labels and label_table is None, restart=force,
                          ov_target="resid",  # the atlas pairs residual SAEs (GPT-2: d_model = n_heads·d_head)
                          progress=_layer_progress(progress, overall, per_layer, L))
        if label_table is not None:
            _attach_labels(run, label_table)
        del run
        gc.collect()  # one layer's tensors at a time
        ids = _known_ids(atlasdir.finished(out))
        combined.after_layer()


# ---------------------------------------------------------------- the layers as Ray tasks

def _for_ray(req: _Request, layers: Sequence[int]) -> _Request:
    """The request with references every Ray node can read: local paths made absolute (a worker's working directory
    is not the driver's); objects in memory are refused (a task loads its own layer's tensors)."""
    if not isinstance(req.model, (str, Path)):
        raise BadInput("with ray the model must be a reference every node can read (a Hub id or a path), not an object in memory")
    needed = sorted({L - 1 for L in layers} | ({L for L in layers} if "OV" in req.circuits else set()))
    refs = {s: req.sae(s) for s in needed}
    bad = [s for s, r in refs.items() if not isinstance(r, (str, Path))]
    if bad:
        raise BadInput(f"with ray the SAE of layer {bad[0]} must be a reference every node can read (a Hub id, a path or a "
                       "SAELens-style id), not an object in memory")

    def where(ref: str | Path) -> str:
        p = Path(ref).expanduser()
        return str(p.absolute()) if p.exists() else str(ref)

    fixed = {s: where(r) for s, r in refs.items()}
    return dataclasses.replace(req, model=where(req.model), sae=lambda s: fixed[s] if s in fixed else req.sae(s))


def _ray_layers(cluster, req: _Request, out: Path, todo: Sequence[int], ids: dict[int, str], extract_args: dict,
                labels: bool, label_table: pd.DataFrame | None, progress: ProgressFactory | None, overall,
                heads_per_task: int | None, combined: _Combined) -> None:
    """Every layer of `todo` as Ray tasks (featgraph.api.ray_atlas); each layer written whole as its head sets return,
    labelled as `extract` labels a run, then the combined run rebuilt when due (_Combined)."""
    from featgraph.api import ray_atlas
    from featgraph.api.run import Run
    from featgraph.errors import FeatgraphError

    id_fn, which = req.sae_id, req.circuits
    jobs = [ray_atlas.Job(L, str(req.model), str(req.sae(L - 1)), str(req.sae(L)) if "OV" in which else None,
                          id_fn(L - 1) if id_fn else ids.get(L - 1),
                          (id_fn(L) if id_fn else ids.get(L)) if "OV" in which else None) for L in todo]
    settings = {"circuits": which, "top_k": req.top_k, "min_abs": req.min_abs, "per_source_k": req.per_source_k,
                "attn_scale": req.attn_scale, "rope_offset": req.rope_offset, "model_id": req.model_id,
                "ov_target": "resid"} | extract_args
    per_layer = len(req.heads) * len(which)
    for job, results in ray_atlas.run(cluster, jobs, req.heads, settings, heads_per_task, overall):
        L = job.layer
        rename = None
        m = results[0]["manifest"]
        # The single-process atlas computes layer L−1 first and names an SAE it had to invent an id for after its
        # role there (layer L−1's output): the same name here, where the layers ran at once.
        if job.sae_in_id is None and (m.sae_in or {}).get("id_source") == "invented" and "OV" in which and L - 1 in todo:
            rename = f"{L - 1}-sae-out-{(m.sae_in or {}).get('d_sae')}"
        old_in = (m.sae_in or {}).get("neuronpedia_id")
        with _atlas_warnings():
            for text in dict.fromkeys(w for r in results for w in r["warnings"]):
                if rename is None or f"{old_in!r}" not in text:
                    warnings.warn(text, FeatgraphWarning, stacklevel=2)
            d = atlasdir.layer_dir(out, L)
            ray_atlas.write_layer(d, results, rename, combined.engine)
            run = Run.open(d)
            if labels and label_table is None:
                try:
                    run = run.label(progress=_layer_progress(progress, overall, per_layer, L))
                except FeatgraphError as e:
                    if isinstance(e, BadInput):
                        raise
                    warnings.warn(f"labels not attached ({e}); run `featgraph labels {d}` later", FeatgraphWarning, stacklevel=2)
        if label_table is not None:
            _attach_labels(run, label_table)
        combined.after_layer()


# ---------------------------------------------------------------- checks before anything is written

def _default_saes(model: Any, config: Any, model_id: str | None) -> Callable[[int], Any]:
    """The residual SAE of each layer from SAELens' registry: the model's first complete per-layer residual series
    (featgraph.load.registry.atlas_default; docs/formats.md), found by the model's name."""
    from featgraph.api.compute import default_series
    from featgraph.load import registry

    series = default_series(model, model_id, config.n_layers)
    if series is not None:
        if series.release == "gemma-scope-2b-pt-res-canonical":  # the post's defaults: only for Gemma 2 2B itself
            from featgraph.api.reload import check_default_sae_fits

            check_default_sae_fits(config, model, "--sae-template (sae_template=)")
        return series.sae
    raise BadInput("featgraph picks default SAEs only for a model with a residual SAE after every layer in SAELens' "
                   f"registry ({'; '.join(registry.atlas_models())}), found by its name: pass sae_template, a template with "
                   "{layer} (--sae-template), e.g. gemma-scope-2-1b-pt-res-all/layer_{layer}_width_16k_l0_small for "
                   "google/gemma-3-1b-pt, or saes/layer_{layer}/params.npz for local files, or name the model (--model-id)")


def _model_config(model: Any):
    """The model's config (n_layers, n_heads, …) without loading its weights when it is a reference."""
    from featgraph.api.compute import _load_model
    from featgraph.core.weights import AttentionWeights
    from featgraph.load import model as model_io

    if isinstance(model, (str, Path)):
        return model_io.load_config(str(model))
    if isinstance(model, AttentionWeights):
        raise BadInput("an atlas needs the whole model, not one layer's AttentionWeights: pass a Hub id, a local "
                       "directory, a transformers module or (state_dict, config)")
    return _load_model(model, 0).config


def _check_sae_refs(req: _Request, layers: Sequence[int]) -> None:
    """Every SAE reference the atlas will read resolves (a template's typo fails now, not after hours)."""
    from featgraph.load import sae as sae_io

    needed = sorted({L - 1 for L in layers} | ({L for L in layers} if "OV" in req.circuits else set()))
    for s in needed:
        ref = req.sae(s)
        if isinstance(ref, (str, Path)):
            try:
                sae_io.resolve(str(ref))
            except BadInput as e:
                raise BadInput(f"the SAE of layer {s}: {e}") from None
        elif ref is None:
            raise BadValue("sae_template", ref, f"gave no SAE for layer {s}: it must return a path, Hub path, id or SAE object")


# ---------------------------------------------------------------- source ids shared across layers

def _known_ids(done: dict[int, Manifest]) -> dict[int, str]:
    """Source ids featgraph had to invent for the SAEs of finished layers (SAE layer -> id), so the same SAE gets
    the same id as the output of one layer and the input of the next; ids found in the inputs are found again."""
    ids: dict[int, str] = {}
    for L, m in done.items():
        for part, s in (("sae_in", L - 1), ("sae_out", L)):
            rec = getattr(m, part) or {}
            if rec.get("id_source") == "invented" and rec.get("neuronpedia_id"):
                ids.setdefault(s, str(rec["neuronpedia_id"]))
    return ids


def _check_shared_ids(done: dict[int, Manifest]) -> None:
    by_layer: dict[int, set[str]] = {}
    for L, m in done.items():
        for part, s in (("sae_in", L - 1), ("sae_out", L)):
            sid = (getattr(m, part) or {}).get("neuronpedia_id")
            if sid:
                by_layer.setdefault(s, set()).add(str(sid))
    split = {s: v for s, v in by_layer.items() if len(v) > 1}
    if split:
        s, v = min(split.items())
        warnings.warn(f"the SAE of layer {s} has the ids {', '.join(sorted(v))} in different layers' runs, so its features "
                      "are not shared nodes there: pass sae_id_template (--sae-id-template) to name each layer's SAE once",
                      FeatgraphWarning, stacklevel=3)


def _attach_labels(run, table: pd.DataFrame) -> None:
    """Labels from the caller's files for this layer's SAEs (a layer they do not cover keeps none)."""
    sources = {str((getattr(run.manifest, p) or {}).get("neuronpedia_id")) for p in ("sae_in", "sae_out")}
    rows = table[table["sae"].astype(str).isin(sources)]
    if len(rows):
        try:
            run.label(label_table=rows)
        except BadInput as e:  # the files name this SAE but none of the features this layer kept
            warnings.warn(f"layer {run.manifest.layer}: {e}", FeatgraphWarning, stacklevel=3)


def _layer_progress(progress: ProgressFactory | None, overall, per_layer: int, layer: int) -> ProgressFactory | None:
    """extract's progress folded into the atlas' one bar: its finished matrices advance it (resumed ones at once);
    the per-matrix bars are dropped (there would be hundreds); anything else (label downloads) is shown per layer."""
    if progress is None:
        return None

    def factory(description: str, total: int | None):
        if description == "all matrices" and overall is not None:
            if total is not None and total < per_layer:
                overall(per_layer - total)
            return overall
        if description.startswith("head "):
            return lambda n: None
        return progress(f"layer {layer}: {description}", total)

    return factory


# ---------------------------------------------------------------- the combined run

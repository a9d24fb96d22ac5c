"""The atlas on a Ray cluster: `featgraph atlas … --ray [ADDRESS]`, `featgraph.atlas(…, ray=…)`.

Each (layer, head set) is one Ray task. A task reads that layer's attention tensors and its two SAEs from their
references — a Hub id (each node reads its own Hub cache) or a path every node can read — computes the selected
edges and exact moments of its heads (`extract` with no output directory), and returns them. The driver writes a
layer once all its head sets are back, exactly as the single-process atlas does (featgraph.api.multilayer): the
same `layers/L{layer}` run written whole or not at all, the same combined tables and manifest, so an interrupted
Ray atlas continues from its finished layers, with or without Ray.

Resources: a task asks for one GPU (device cuda, or auto on a cluster that has GPUs), or for `cpus_per_task` CPUs.
A task whose worker process dies is run again by Ray (`max_retries`: a system failure); a task that raises is not
(a featgraph error is the user's to fix and is raised on the driver as one line). Without an address a local Ray
runtime is started on this machine only (it listens on 127.0.0.1), using its GPUs or its CPUs; with one, the
existing cluster is used (`auto`, `HOST:PORT` or `ray://HOST:PORT`), where featgraph must be installed on every node.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featgraph.errors import BadInput, BadValue, FeatgraphError, FeatgraphWarning

EXTRA = "pip install 'featgraph[ray]'"
MAX_RETRIES = 3  # Ray's default for tasks whose worker dies, said explicitly
LOCAL = "local"  # `--ray` without an address


def _import_ray(local: bool):
    """Ray, or a one-line error naming the extra. A local runtime is kept on the loopback interface: Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is first imported (0: every address it uses is 127.0.0.1)."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ModuleNotFoundError:
        raise BadInput(f"--ray (ray= in Python) needs Ray, which is not installed: {EXTRA}") from None
    return ray


@dataclass
class Cluster:
    """A connection to a Ray cluster for one atlas: its size, and the device every task of the atlas uses."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    device: str  # "cuda" or "cpu"
    cpus_per_task: int
    version: str
    started: bool = False  # this atlas started the runtime (and stops it)
    _ray: Any = field(default=None, repr=False)

    @property
    def slots(self) -> int:
        """How many tasks can run at once."""
        return max(1, int(self.gpus) if self.device == "cuda" else int(self.cpus // self.cpus_per_task))

    def describe(self) -> dict:
        """The manifest's record of the engine."""
        return {"name": "ray", "version": self.version, "address": self.address, "nodes": self.nodes,
                "cpus": self.cpus, "gpus": self.gpus, "device": self.device,
                "per_task": {"GPU": 1} if self.device == "cuda" else {"CPU": self.cpus_per_task}}

    def close(self) -> None:
        if self.started and self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self.started = False


def connect(address: str | bool, device: str, cpus_per_task: int = 1) -> Cluster:
    """Join the cluster at `address` (True or "local": start a local runtime) and decide the tasks' device.

    device cuda on a cluster without GPUs is a BadValue before any task starts (and a runtime started here is
    stopped again)."""
    import logging

    if device not in ("auto", "cpu", "cuda"):
        raise BadValue("device", device, "must be auto, cpu or cuda")
    if cpus_per_task < 1:
        raise BadValue("cpus_per_task", cpus_per_task, "must be ≥ 1")
    local = address is True or address in ("", LOCAL)
    ray = _import_ray(local)
    where = "the local Ray runtime" if local else f"the Ray cluster at {address}"
    started = False
    if not ray.is_initialized():
        try:
            if local:
                # "local": a runtime of its own; with no address ray.init joins RAY_ADDRESS or the latest cluster
                # started on this machine (RAY_TMPDIR/ray_current_cluster), e.g. another user's or test run's
                ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(address=str(address), logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise BadInput(f"could not connect to {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        started = True
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    cluster = Cluster("local" if local else str(address), nodes, cpus, gpus, "cpu", cpus_per_task,
                      str(getattr(ray, "__version__", "?")), started, ray)
    try:
        if device == "cuda" and gpus < 1:
            raise BadValue("device", "cuda", f"needs GPUs, and {where} has none ({nodes} node{'s' * (nodes != 1)}, "
                           f"{cpus:g} CPUs): use --device cpu or auto", value_first=True)
        cluster.device = "cuda" if device == "cuda" or (device == "auto" and gpus >= 1) else "cpu"
        if cluster.device == "cpu" and cpus < cpus_per_task:
            raise BadValue("cpus_per_task", cpus_per_task, f"is more than the {cpus:g} CPUs of {where}", value_first=True)
    except BadInput:
        cluster.close()
        raise
    return cluster


def head_sets(heads: Sequence[int], layers: int, slots: int, per_task: int | None) -> list[tuple[int, ...]]:
    """The heads of a layer split into the head sets of its tasks: `per_task` heads each, or (None) one set per
    layer unless the cluster runs more tasks at once than there are layers, then as many sets as keep it busy."""
    heads = tuple(heads)
    if per_task is None:
        sets = min(len(heads), max(1, math.ceil(slots / max(1, layers))))
        per_task = math.ceil(len(heads) / sets)
    if per_task < 1:
        raise BadValue("heads_per_task", per_task, "must be ≥ 1")
    return [heads[i : i + per_task] for i in range(0, len(heads), per_task)]


def atlas_layer_task(model: str, layer: int, sae_in: str, sae_out: str | None, heads: tuple[int, ...], settings: dict,
          device: str, cpus: int) -> dict:
    """One (layer, head set) on a worker: `extract` with no output; its edges, manifest and warnings."""
    import torch

    from featgraph.api.compute import extract

    if device == "cpu":
        torch.set_num_threads(max(1, cpus))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run = extract(model=model, layer=layer, sae_in=sae_in, sae_out=sae_out, heads=heads, device=device,
                          labels=False, out=None, **settings)
        except FeatgraphError as e:  # raised again on the driver, as itself (a BadValue does not pickle)
            return {"error": (isinstance(e, BadInput), str(e))}
    import ray

    return {"edges": run.edge_table, "manifest": run.manifest, "node": ray.get_runtime_context().get_node_id(),
            "warnings": list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, FeatgraphWarning)))}


@dataclass(frozen=True)
class Job:
    """One layer's task inputs, as the driver decided them (references only: nothing large travels)."""

    layer: int
    model: str
    sae_in: str
    sae_out: str | None
    sae_in_id: str | None
    sae_out_id: str | None


def run(cluster: Cluster, jobs: Sequence[Job], heads: Sequence[int], settings: dict, heads_per_task: int | None,
        advance: Callable[[int], None] | None) -> Iterator[tuple[Job, list[dict]]]:
    """Submit every (layer, head set) task at once; yield (job, results in head order) as each layer completes.

    advance: called with the number of finished matrices as each task returns (the atlas' progress bar)."""
    ray = cluster._ray
    sets = head_sets(heads, len(jobs), cluster.slots, heads_per_task)
    opts = {"num_gpus": 1, "num_cpus": 1} if cluster.device == "cuda" else {"num_cpus": cluster.cpus_per_task}
    remote = ray.remote(max_retries=MAX_RETRIES, **opts)(atlas_layer_task)
    n_circ = len(settings["circuits"])
    pending: dict[Any, tuple[int, int]] = {}
    results: dict[int, dict[int, dict]] = {j.layer: {} for j in jobs}
    by_layer = {j.layer: j for j in jobs}
    for j in jobs:
        for i, hs in enumerate(sets):
            s = settings | {"sae_in_id": j.sae_in_id, "sae_out_id": j.sae_out_id}
            ref = remote.remote(j.model, j.layer, j.sae_in, j.sae_out, hs, s, cluster.device, cluster.cpus_per_task)
            pending[ref] = (j.layer, i)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                layer, i = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise FeatgraphError(f"layer {layer}: the Ray task failed: {str(e).strip().splitlines()[-1]}") from None
                if "error" in out:
                    bad, msg = out["error"]
                    raise (BadInput if bad else FeatgraphError)(f"layer {layer}: {msg}")
                results[layer][i] = out
                if advance is not None:
                    advance(len(sets[i]) * n_circ)
                if len(results[layer]) == len(sets):
                    done = results.pop(layer)
                    yield by_layer[layer], [done[k] for k in sorted(done)]
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def write_layer(out: Path, results: Sequence[dict], rename_in: str | None, engine: dict) -> None:
    """One layer's run from its head sets' results (head order), written whole (rundir.write_run)."""
    import pandas as pd

    from featgraph.core.schema import features_from_edges
    from featgraph.runs import resume, rundir

    ms = [r["manifest"] for r in results]
    edges = pd.concat([r["edges"] for r in results], ignore_index=True)
    m = ms[0]
    if rename_in is not None:  # the name the single-process atlas gives this SAE (layer−1's output): see multilayer
        old = (m.sae_in or {}).get("neuronpedia_id")
        model_id = (m.model or {}).get("neuronpedia_id")
        a, b = f"{model_id}/{old}/", f"{model_id}/{rename_in}/"
        for col in ("src", "dst"):
            edges[col] = edges[col].where(~edges[col].str.startswith(a), b + edges[col].str.slice(len(a)))
        m = m.replace(sae_in=dict(m.sae_in or {}) | {"neuronpedia_id": rename_in, "id_source": "given (sae_in_id=, --sae-in-id)"})
    nodes = list(dict.fromkeys(r["node"] for r in results))
    m = m.replace(run_id=None, heads=tuple(h for x in ms for h in x.heads),
                  stats={k: v for x in ms for k, v in x.stats.items()},
                  extra=dict(m.extra) | {"engine": engine | {"nodes": nodes}})
    rundir.write_run(out, edges, features_from_edges(edges), m)
    resume.Parts(out, "").discard()  # what an interrupted single-process run of this layer had kept

"""The atlas on a real Ray cluster: two nodes on this machine (ray.cluster_utils.Cluster, one CPU each, every
address 127.0.0.1), against the single-process atlas of the same tiny Gemma 2 and Gemma Scope-layout SAEs.

Same edges byte for byte after sorting (whole layers, and head sets split over tasks while a worker is killed
mid-task — SIGKILL from outside, found by its process title — and Ray runs its task again), resume from finished layers,
device cuda on a cluster without GPUs as one line before anything is written, and the missing extra named.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

# Ray reads these when first imported: the whole cluster on the loopback interface, no usage report.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import pandas as pd
import pytest

import featgraph as fg
from featgraph.errors import BadInput, FeatgraphWarning

from helpers import TINY, make_tiny_model, write_sae
from helpers import fg as cli

ray = pytest.importorskip("ray", reason="Ray is the optional extra featgraph[ray] (the test extra installs it)")
pytestmark = pytest.mark.ray

KEY = ["layer", "head", "circuit", "src", "dst"]
WIDTHS = {0: 40, 1: 36, 2: 44}
TOP_K = 150
TASK = b"ray::atlas_layer_task"  # a worker's process title while it runs a task


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_in")
    make_tiny_model(root / "gemma-2-tiny")
    for layer, width in WIDTHS.items():
        write_sae(root / "gemma-scope-2b-pt-res" / f"layer_{layer}" / "width_16k" / "average_l0_71", TINY["hidden_size"],
                  width, seed=20 + layer)
    return root / "gemma-2-tiny", str(root / "gemma-scope-2b-pt-res" / "layer_{layer}" / "width_16k" / "average_l0_71" / "params.npz")


def _args(inputs, out, *extra):
    model, template = inputs
    return ["atlas", "--model", model, "--layers", "1-2", "--sae-template", template, "--top-k", TOP_K, "--device", "cpu",
            "--no-labels", "--out", out, *extra]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The single-process atlas."""
    out = tmp_path_factory.mktemp("ray_ref") / "atlas"
    r = cli(*_args(inputs, out))
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster on this machine, one CPU per node, with a Ray temp folder of its own (RAY_TMPDIR, short:
    it holds Unix sockets): under the shared /tmp/ray, the cluster's address in ray_current_cluster is what any
    address-less ray.init on the machine joins, and session_latest is another test run's."""
    import tempfile

    from ray.cluster_utils import Cluster

    before, temp = os.environ.get("RAY_TMPDIR"), tempfile.mkdtemp(prefix="fgray-")
    os.environ["RAY_TMPDIR"] = temp
    try:
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
    finally:
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        shutil.rmtree(temp, ignore_errors=True)


def _sorted(e: pd.DataFrame) -> pd.DataFrame:
    return e.sort_values(KEY).reset_index(drop=True)


def _same_edges(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal byte for byte after sorting: every column, the floats compared as their bits."""
    a, b = _sorted(a), _sorted(b)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) and len(a)
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype.kind == "f":
            x, y = x.view(np.uint32 if x.itemsize == 4 else np.uint64), y.view(np.uint32 if y.itemsize == 4 else np.uint64)
        assert x.dtype == y.dtype and (x == y).all(), col


def test_ray_atlas_equals_the_single_process_atlas(inputs, reference, cluster, tmp_path):
    out = tmp_path / "atlas"
    r = cli(*_args(inputs, out, "--layers", "2", "--ray", cluster.address))  # one layer first: then resume
    assert r.exit_code == 0, r.output
    first = fg.open_run(out / "layers" / "L2").run_id
    r = cli(*_args(inputs, out, "--ray", cluster.address))
    assert r.exit_code == 0, r.output
    got, want = fg.open_run(out), fg.open_run(reference)
    assert got.layers == [1, 2]
    _same_edges(got.edge_table, want.edge_table)
    pd.testing.assert_frame_equal(got.features.sort_values("id").reset_index(drop=True),
                                  want.features.sort_values("id").reset_index(drop=True))
    for L in (1, 2):
        _same_edges(fg.open_run(out / "layers" / f"L{L}").edge_table, fg.open_run(reference / "layers" / f"L{L}").edge_table)
    assert fg.open_run(out / "layers" / "L2").run_id == first  # finished layers are not computed again
    m = json.loads((out / "manifest.json").read_text())
    engine = m["atlas"]["engine"]
    assert engine["name"] == "ray" and engine["nodes"] == 2 and engine["cpus"] == 2 and engine["device"] == "cpu"
    assert {p["device"] for p in m["atlas"]["parts"].values()} == {"cpu"}
    layer = json.loads((out / "layers" / "L1" / "manifest.json").read_text())
    assert layer["engine"]["name"] == "ray" and len(layer["engine"]["nodes"]) >= 1
    assert json.loads((reference / "manifest.json").read_text())["atlas"]["engine"] == {"name": "process"}


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _ours(pid: int) -> bool:
    """Whether `pid` descends from this process (the cluster's raylets are its children, their workers theirs): a
    worker of another test run's cluster on this machine is not ours to kill."""
    me = os.getpid()
    while pid > 1:
        pid = _parent(pid)
        if pid == me:
            return True
    return False


def _kill_first_task(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first worker of this test's cluster seen running an atlas task (its process title), once."""
    while not stop.is_set():
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                title = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(TASK) and _ours(int(p.name)):
                os.kill(int(p.name), signal.SIGKILL)
                killed.append(int(p.name))
                return
        time.sleep(0.005)


def test_head_sets_and_a_killed_worker_retried_give_the_same_edges(inputs, cluster, tmp_path):
    """SAE files whose paths name nothing (ids invented, shared across layers as one process shares them), heads
    split into sets of 3 and 1, and one worker SIGKILLed while it runs its task."""
    model, template = inputs
    for L in WIDTHS:
        (tmp_path / "saes" / f"sae{L}").mkdir(parents=True)
        shutil.copy(template.format(layer=L), tmp_path / "saes" / f"sae{L}" / "params.npz")
    plain = str(tmp_path / "saes" / "sae{layer}" / "params.npz")
    common = dict(model=model, layers="1-2", sae_template=plain, top_k=TOP_K, device="cpu", labels=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatgraphWarning)  # the invented ids
        want = fg.atlas(**common, out=tmp_path / "one")
        killed: list[int] = []
        stop = threading.Event()
        killer = threading.Thread(target=_kill_first_task, args=(killed, stop), daemon=True)
        killer.start()
        try:
            run = fg.atlas(**common, out=tmp_path / "atlas", ray=cluster.address, heads_per_task=3)  # 4 heads: 3 + 1
        finally:
            stop.set()
            killer.join(5)
    assert len(killed) == 1, "no task was seen running"
    _same_edges(run.edge_table, want.edge_table)
    assert set(run.features["sae"]) == {"0-sae-in-40", "1-sae-out-36", "2-sae-out-44"}  # layer 1's output is layer 2's input
    for L in (1, 2):
        _same_edges(fg.open_run(tmp_path / "atlas" / "layers" / f"L{L}").edge_table, want.layer_run(L).edge_table)
    # the head sets of a layer are put together in head order, as one process computes them
    stats = json.loads((tmp_path / "atlas" / "layers" / "L1" / "manifest.json").read_text())["stats"]
    assert list(stats) == [f"{h}/{c}" for h in range(4) for c in ("QK", "OV")]


def test_cuda_on_a_cluster_without_gpus_is_one_line_before_anything(inputs, cluster, tmp_path):
    r = cli(*_args(inputs, tmp_path / "atlas", "--ray", cluster.address, "--device", "cuda"))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: --device cuda needs GPUs, and the Ray cluster at ") and r.stderr.count("\n") == 1, r.stderr
    assert "2 nodes, 2 CPUs" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_ray_the_extra_is_named(inputs, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ModuleNotFoundError
    model, template = inputs
    with pytest.raises(BadInput, match=r"needs Ray, which is not installed: pip install 'featgraph\[ray\]'"):
        fg.atlas(model=model, layers="1", sae_template=template, device="cpu", labels=False, out=tmp_path / "atlas", ray=True)
    r = cli(*_args(inputs, tmp_path / "atlas", "--ray"))
    assert r.exit_code == 2 and "pip install 'featgraph[ray]'" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_ray_without_an_address_means_a_local_runtime():
    from featgraph.cli.app import _optional_values

    assert _optional_values(["atlas", "--ray", "--layers", "1"]) == ["atlas", "--ray", "local", "--layers", "1"]
    assert _optional_values(["atlas", "--layers", "1", "--ray"]) == ["atlas", "--layers", "1", "--ray", "local"]
    assert _optional_values(["atlas", "--ray", "10.0.0.1:6379"]) == ["atlas", "--ray", "10.0.0.1:6379"]
    assert _optional_values(["atlas", "--ray=auto"]) == ["atlas", "--ray=auto"]


def test_a_local_runtime_is_its_own_not_the_latest_cluster_on_the_machine(cluster):
    """`--ray` without an address starts a runtime of its own: the fixture's cluster (two nodes) is the latest one
    recorded in this Ray temp folder, which an address-less ray.init joins."""
    from featgraph.api.ray_atlas import LOCAL, connect

    assert ray._private.utils.read_ray_address() == cluster.address
    c = connect(LOCAL, "cpu")
    try:
        assert c.started and c.nodes == 1, c
        assert ray.get_runtime_context().gcs_address != cluster.address
    finally:
        c.close()
    assert not ray.is_initialized()

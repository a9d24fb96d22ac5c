"""Neo4j loads against a real Neo4j 5.26: concurrent loads of one run, a load killed mid-way, runs
sharing features in one database, and credentials inside NEO4J_URI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import featgraph as fg_api
from featgraph.errors import BadInput, FeatgraphError, FeatgraphWarning

from helpers import fg


@pytest.fixture(scope="module")
def run_dir(demo_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("n4") / "run"
    shutil.copytree(demo_run, d)
    return d


def _count(env, cypher, **params):
    from neo4j import GraphDatabase

    with GraphDatabase.driver(env["uri"], auth=(env["user"], env["password"])) as d:
        return d.execute_query(cypher, params).records[0][0]


def _edges_of(env, run_id):
    return _count(env, "MATCH ()-[r]->() WHERE r.run = $run RETURN count(r)", run=run_id)


@pytest.mark.neo4j
def test_concurrent_loads_of_one_run_leave_one_copy(run_dir, neo4j_env, monkeypatch):
    monkeypatch.setenv("FEATGRAPH_NEO4J_BATCH", "100")  # many transactions, so the two loads overlap
    run = fg_api.open_run(run_dir)
    start = threading.Barrier(2)
    results, errors = [], []

    def load():
        try:
            start.wait()
            results.append(fg_api.open_run(run_dir).load(neo4j=True))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(results) == 2
    assert _edges_of(neo4j_env, run.run_id) == len(run.edges)
    assert _count(neo4j_env, "MATCH ()-[r]->() RETURN count(r)") == len(run.edges)
    assert _count(neo4j_env, "MATCH (f:Feature) RETURN count(f)") == len(run.features)
    assert _count(neo4j_env, "MATCH (r:FeatgraphRun {id: $run}) RETURN r.status", run=run.run_id) == "complete"
    got = run.query("top_edges", neo4j=True, head=0, circuit="QK", limit=100000)
    assert len(got) == int(((run.edges["head"] == 0) & (run.edges["circuit"] == "QK")).sum())


@pytest.mark.neo4j
def test_killed_load_is_refused_until_reloaded(run_dir, neo4j_env):
    run = fg_api.open_run(run_dir)
    env = dict(os.environ, NEO4J_URI=neo4j_env["uri"], NEO4J_USERNAME=neo4j_env["user"],
               NEO4J_PASSWORD=neo4j_env["password"], FEATGRAPH_NEO4J_BATCH="1")
    proc = subprocess.Popen([sys.executable, "-m", "featgraph", "load", str(run_dir), "--neo4j"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while _count(neo4j_env, "MATCH ()-[r:QK]->() RETURN count(r)") == 0:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    n_qk = _count(neo4j_env, "MATCH ()-[r:QK]->() RETURN count(r)")
    assert 0 < n_qk < int((run.edges["circuit"] == "QK").sum())  # killed mid-way
    assert _count(neo4j_env, "MATCH ()-[r:OV]->() RETURN count(r)") == 0

    with pytest.raises(FeatgraphError, match=f"load of run {run.run_id} did not finish.*featgraph load"):
        run.query("top_edges", neo4j=True, head=0, circuit="QK", limit=10)
    r = fg("query", run_dir, "MATCH ()-[r:OV]->() RETURN count(r) AS n", "--neo4j")
    assert r.exit_code == 1 and "did not finish" in r.stderr and r.stderr.count("\n") == 1
    with pytest.warns(FeatgraphWarning, match=run.run_id):
        run.query("top_edges", neo4j=True, head=0, circuit="QK", limit=10, run="*")

    # the killed client's lock died with its connection: a re-load neither waits nor fails
    done = subprocess.run([sys.executable, "-m", "featgraph", "load", str(run_dir), "--neo4j"],
                          env=env | {"FEATGRAPH_NEO4J_BATCH": "50000"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _edges_of(neo4j_env, run.run_id) == len(run.edges)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = run.query("top_edges", neo4j=True, head=0, circuit="QK", limit=100000, run="*")
    assert len(got) == int(((run.edges["head"] == 0) & (run.edges["circuit"] == "QK")).sum())


@pytest.mark.neo4j
def test_unlabelled_run_keeps_shared_descriptions(run_dir, neo4j_env, tmp_path):
    labelled = fg_api.open_run(run_dir)
    assert labelled.features["description"].notna().sum() > 100
    labelled.edges.to_parquet(tmp_path / "edges.parquet")
    plain = fg_api.import_edges(tmp_path / "edges.parquet", tmp_path / "plain")
    assert plain.features["description"].isna().all() and set(plain.features["id"]) == set(labelled.features["id"])
    assert plain.run_id != labelled.run_id

    assert fg("load", run_dir, "--neo4j").exit_code == 0
    assert fg("load", tmp_path / "plain", "--neo4j").exit_code == 0
    from neo4j import GraphDatabase

    with GraphDatabase.driver(neo4j_env["uri"], auth=(neo4j_env["user"], neo4j_env["password"])) as d:
        rows = d.execute_query("MATCH (f:Feature) RETURN f.id AS id, f.description AS description").records
    got = pd.Series({r["id"]: r["description"] for r in rows}).sort_index()
    want = labelled.features.set_index("id")["description"].sort_index()
    assert got.index.tolist() == want.index.tolist()
    assert [None if pd.isna(v) else v for v in got] == [None if pd.isna(v) else v for v in want]
    # the unlabelled run's own answers carry the descriptions its features have in the shared store
    top = plain.query("top_edges", neo4j=True, head=0, circuit="QK", limit=5)
    assert top["src_description"].notna().any()


URIS_WITH_SECRETS = ["bolt://someone:s3cr3t-in-uri@127.0.0.1:9", "neo4j://127.0.0.1:9?apikey=s3cr3t-key",
                      "neo4j://127.0.0.1:9?policy=x&auth=s3cr3t-auth#s3cr3t-frag", "bolt://127.0.0.1:9?token=s3cr3t",
                      "neo4j://someone:pa?s3cr3t@127.0.0.1:9", "neo4j://127.0.0.1:9/s3cr3t-path"]


@pytest.mark.parametrize("uri", URIS_WITH_SECRETS)
def test_password_in_uri_never_shown(run_dir, monkeypatch, uri):
    from featgraph.graph.neo4j_store import Neo4jSettings

    monkeypatch.setenv("NEO4J_URI", uri)
    monkeypatch.setenv("NEO4J_PASSWORD", "env-password-123")
    assert "s3cr3t" not in repr(Neo4jSettings.from_env()) and "env-password" not in repr(Neo4jSettings.from_env())
    for args in (("load", run_dir, "--neo4j"), ("query", run_dir, "RETURN 1", "--neo4j")):
        r = fg(*args)
        assert r.exit_code == 1 and r.stderr.count("\nerror: ") + r.stderr.startswith("error: ") == 1, r.output
        assert "s3cr3t" not in r.output and "env-password" not in r.output
        assert "127.0.0.1:9" in r.stderr  # still says where it tried
    with pytest.raises(FeatgraphError) as e:
        fg_api.open_run(run_dir).query("RETURN 1", neo4j=True)
    assert "s3cr3t" not in str(e.value) and "s3cr3t" not in repr(e.value)


def test_batch_size_setting_is_checked(monkeypatch):
    from featgraph.errors import BadInput
    from featgraph.graph.neo4j_store import Neo4jSettings

    monkeypatch.setenv("NEO4J_PASSWORD", "x" * 12)
    for bad in ("0", "-5", "ten"):
        monkeypatch.setenv("FEATGRAPH_NEO4J_BATCH", bad)
        with pytest.raises(BadInput, match="FEATGRAPH_NEO4J_BATCH"):
            Neo4jSettings.from_env()
    monkeypatch.setenv("FEATGRAPH_NEO4J_BATCH", "7")
    assert Neo4jSettings.from_env().batch == 7


@pytest.mark.neo4j
def test_reload_rewrites_only_what_changed(run_dir, neo4j_env):
    """A re-load of the same edges keeps them (and still refreshes labels); edges the store lost, or a run whose
    edges changed, are written again."""
    from neo4j import GraphDatabase

    from featgraph.api.run import Run

    run = fg_api.open_run(run_dir)

    def edges():
        with GraphDatabase.driver(neo4j_env["uri"], auth=(neo4j_env["user"], neo4j_env["password"])) as d:
            rows = d.execute_query("MATCH (a)-[r]->(b) WHERE r.run = $run RETURN elementId(r) AS e, a.id AS a, b.id AS b, "
                                   "r.weight AS w", run=run.run_id).records
        return {r["e"]: (r["a"], r["b"], r["w"]) for r in rows}

    run.load(neo4j=True)
    first = edges()
    assert len(first) == len(run.edges)
    relabelled = run.features.assign(description=run.features["description"].where(run.features.index != 0, "a new label"))
    Run(run.path, run.manifest, run.edge_table, relabelled).load(neo4j=True)
    assert edges() == first  # the very same relationships
    assert _count(neo4j_env, "MATCH (f:Feature {id: $id}) RETURN f.description", id=run.features["id"].iloc[0]) == "a new label"

    _count(neo4j_env, "MATCH ()-[r:OV]->() WITH r LIMIT 1 DELETE r RETURN 1")  # the store lost an edge
    run.load(neo4j=True)
    again = edges()
    assert len(again) == len(run.edges) and not set(again) & set(first)

    halved = run.edge_table.assign(weight=run.edge_table["weight"] * 0.5)
    Run(run.path, run.manifest, halved, run.features).load(neo4j=True)
    got = sorted((a, b, w) for a, b, w in edges().values())
    want = sorted(zip(halved["src"], halved["dst"], halved["weight"].astype("float64")))
    assert [g[:2] for g in got] == [w[:2] for w in want] and np.allclose([g[2] for g in got], [w[2] for w in want])


@pytest.mark.neo4j
def test_a_run_loaded_under_a_name_is_queried_under_it(run_dir, neo4j_env, tmp_path):
    d = shutil.copytree(run_dir, tmp_path / "run")
    assert fg("load", d, "--neo4j", "--run-name", "my-name").exit_code == 0
    r = fg("query", d, "top_edges", "--neo4j", "--param", "head=0", "--param", "circuit=QK", "--param", "limit=5",
           "--format", "json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 5 and fg_api.open_run(d).neo4j_run == "my-name"


@pytest.mark.neo4j
def test_two_runs_under_one_name_are_refused_unless_forced(run_dir, neo4j_env, tmp_path):
    """A second, different run loaded under a --run-name another run holds stops with one line naming both; the
    same run loaded again stays a quiet re-load; --force replaces the other run."""
    a = shutil.copytree(run_dir, tmp_path / "a")
    b = shutil.copytree(run_dir, tmp_path / "b")
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["run_id"] = "b-" + manifest["run_id"]  # another run (a copy keeps the id: it is the same run)
    (b / "manifest.json").write_text(json.dumps(manifest))
    id_a, id_b = fg_api.open_run(a).run_id, fg_api.open_run(b).run_id
    assert id_a != id_b
    assert fg("load", a, "--neo4j", "--run-name", "shared").exit_code == 0
    held = _edges_of(neo4j_env, "shared")
    recorded = (b / "manifest.json").read_text()
    r = fg("load", b, "--neo4j", "--run-name", "shared")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert id_a in r.stderr and id_b in r.stderr and "--run-name" in r.stderr and "--force" in r.stderr, r.stderr
    assert _count(neo4j_env, "MATCH (r:FeatgraphRun {id: 'shared'}) RETURN r.source") == id_a
    assert _edges_of(neo4j_env, "shared") == held and (b / "manifest.json").read_text() == recorded  # b's load not recorded
    # the same run again: a re-load, no question asked (a copy of it too)
    assert fg("load", a, "--neo4j", "--run-name", "shared").exit_code == 0
    assert fg("load", shutil.copytree(a, tmp_path / "a2"), "--neo4j", "--run-name", "shared").exit_code == 0
    # under its own name b loads beside a
    assert fg("load", b, "--neo4j", "--run-name", "other").exit_code == 0
    # --force replaces a's edges with b's
    r = fg("load", b, "--neo4j", "--run-name", "shared", "--force")
    assert r.exit_code == 0, r.output
    assert _count(neo4j_env, "MATCH (r:FeatgraphRun {id: 'shared'}) RETURN r.source") == id_b
    assert _edges_of(neo4j_env, "shared") == held and fg_api.open_run(b).neo4j_run == "shared"
    with pytest.raises(BadInput, match="force=True"):
        fg_api.open_run(a).load(neo4j=True, name="shared")

"""Shared fixtures: a tiny random Gemma 2 saved by transformers, SAEs in Gemma Scope's format."""

from __future__ import annotations

import pytest

from helpers import REPO, TINY, make_tiny_model, write_sae


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(model_dir, transformers model, sae_in path, sae_out path) for layer 1."""
    root = tmp_path_factory.mktemp("tiny")
    model = make_tiny_model(root / "model")
    sae_in = write_sae(root / "sae_in", TINY["hidden_size"], 40, seed=1)
    sae_out = write_sae(root / "sae_out", TINY["hidden_size"], 36, seed=2)
    return root / "model", model, sae_in, sae_out


# ---------------------------------------------------------------- a real Neo4j server

@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory):
    """Neo4j Community 5.26 on 127.0.0.1 via scripts/neo4j-server (jars fetched by Maven)."""
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from neo4j_server import neo4j_server as start

    with start(tmp_path_factory.mktemp("neo4j")) as server:
        yield server


@pytest.fixture
def neo4j_env(neo4j_server, monkeypatch):
    """NEO4J_* set for the CLI/library, and an empty database."""
    from neo4j import GraphDatabase

    monkeypatch.setenv("NEO4J_URI", neo4j_server["uri"])
    monkeypatch.setenv("NEO4J_USERNAME", neo4j_server["user"])
    monkeypatch.setenv("NEO4J_PASSWORD", neo4j_server["password"])
    with GraphDatabase.driver(neo4j_server["uri"], auth=(neo4j_server["user"], neo4j_server["password"])) as d:
        d.execute_query("MATCH (n) DETACH DELETE n")
    return neo4j_server


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo's run directory (synthetic model, planted antipodal features, labels)."""
    from featgraph.api.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "d"
    run_demo(out)
    before = _digests(out / "run")
    yield out / "run"
    # Shared by many tests: a test that writes into it (a load recording itself, labels) must copy it first.
    assert _digests(out / "run") == before, "a test changed the shared demo run: copy it (shutil.copytree) before writing"


def _digests(d):
    import hashlib

    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and not p.name.startswith(".graph.lock")}

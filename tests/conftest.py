"""Shared fixtures: a tiny random Gemma 2 saved by transformers, SAEs in Gemma Scope's format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NEURONPEDIA = SHARED / "data" / "neuronpedia"

TINY = dict(
    vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,  # 4×16 = 64 ≠ 48
    query_pre_attn_scalar=16, rms_norm_eps=1e-6, rope_theta=10000.0,
    attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=32,
    max_position_embeddings=256,
)


def make_tiny_model(path: Path, seed: int = 0):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    cfg = Gemma2Config(**TINY)
    cfg._attn_implementation = "eager"
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5)  # non-zero: the gain 1 + w matters
            else:
                p.copy_(torch.randn_like(p) * 0.2)
    # Small shards so the index and several shard files are exercised.
    model.save_pretrained(path, max_shard_size="20KB", safe_serialization=True)
    return model


def write_sae(path: Path, d_in: int, d_sae: int, seed: int, scale_rows: bool = True) -> Path:
    """A params.npz with Gemma Scope's keys; decoder rows deliberately not unit-norm."""
    rng = np.random.default_rng(seed)
    W_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    if scale_rows:
        W_dec *= rng.uniform(0.3, 3.0, size=(d_sae, 1)).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(
        path / "params.npz",
        W_enc=rng.normal(size=(d_in, d_sae)).astype(np.float32),
        W_dec=W_dec,
        b_enc=rng.normal(size=d_sae).astype(np.float32),
        b_dec=rng.normal(size=d_in).astype(np.float32),
        threshold=np.abs(rng.normal(size=d_sae)).astype(np.float32),
    )
    return path / "params.npz"


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
    from featgraph.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "d"
    run_demo(out)
    return out / "run"

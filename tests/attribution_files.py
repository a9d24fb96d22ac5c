"""Synthetic attribution-graph files in the real schema, laid out as circuit-tracer 0.5.0 writes them
(`Model.model_dump_json(indent=2)`: metadata, qParams, nodes, links; node fields in its Node model's order).
Shared by the tests and bench/attribution.py. The real writer's own files are made in test_attribution.py."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path


def cantor(layer: int, index: int) -> int:
    return (layer + index) * (layer + index + 1) // 2 + index


def graph_dict(n_layers: int = 3, tokens=("<bos>", "the", "cat", "sat"), features=((0, 5, 1), (1, 7, 2), (2, 9, 3), (1, 5, 3)),
               links=None, slug: str = "tiny", scan: str = "gemma-2-2b", source_set: str | None = "gemmascope-transcoder-16k",
               seed: int = 0) -> dict:
    """A small graph as a dict: feature nodes (layer, index, position), an error node per (layer, last position),
    embeddings, one logit; `links` [(source node_id, target node_id, weight)] or a few made up."""
    rnd = random.Random(seed)
    nodes = []
    for layer, index, pos in features:
        nodes.append(_node(f"{layer}_{index}_{pos}", cantor(layer, index), str(layer), pos, "cross layer transcoder",
                           jsNodeId=f"{layer}_{index}-0", influence=rnd.random(), activation=rnd.random() * 10))
    last = len(tokens) - 1
    for layer in range(n_layers):
        nodes.append(_node(f"0_{layer}_{last}", -1, str(layer), last, "mlp reconstruction error",
                           jsNodeId=f"{layer}_{last}-0", influence=rnd.random()))
    for pos in range(len(tokens)):
        nodes.append(_node(f"E_{100 + pos}_{pos}", pos, "E", pos, "embedding", jsNodeId=f"E_{100 + pos}-{pos}", influence=rnd.random()))
    nodes.append(_node(f"{n_layers + 1}_42_{last}", 42, str(n_layers + 1), last, "logit", token_prob=0.7, is_target_logit=True,
                       jsNodeId=f"L_42-{last}", clerp='Output " mat" (p=0.700)'))
    if links is None:
        ids = [n["node_id"] for n in nodes]
        links = [(ids[i], ids[j], round(rnd.gauss(0, 1), 6)) for i in range(len(ids)) for j in range(len(ids)) if i != j and rnd.random() < 0.3]
    meta = {"slug": slug, "scan": scan, "transcoder_list": [], "prompt_tokens": list(tokens), "prompt": "".join(tokens),
            "node_threshold": 0.8, "schema_version": 1}
    if source_set:
        meta["feature_details"] = {"neuronpedia_source_set": source_set}
    return {"metadata": meta, "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": nodes, "links": [{"source": s, "target": t, "weight": w} for s, t, w in links]}


def _node(node_id, feature, layer, ctx, ftype, **kw):
    return {"node_id": node_id, "feature": feature, "layer": layer, "ctx_idx": ctx, "feature_type": ftype,
            "token_prob": kw.get("token_prob", 0.0), "is_target_logit": kw.get("is_target_logit", False), "run_idx": 0,
            "reverse_ctx_idx": 0, "jsNodeId": kw["jsNodeId"], "clerp": kw.get("clerp", ""), "influence": kw.get("influence"),
            "activation": kw.get("activation")}


def write(path: Path, graph: dict, gz: bool = False, indent: int | None = 2) -> Path:
    text = json.dumps(graph, indent=indent)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        Path(path).write_text(text)
    return Path(path)


def write_large(path: Path, n_links: int, n_layers: int = 26, n_pos: int = 40, n_features: int = 60_000, seed: int = 0,
                gz: bool = False) -> dict:
    """A large graph written as a stream (never held in memory), circuit-tracer's layout and indentation; links join
    random nodes. Returns the counts written."""
    rnd = random.Random(seed)
    tokens = [f" t{i}" for i in range(n_pos)]
    opener = gzip.open if gz else open
    node_ids = []
    with opener(path, "wt") as f:
        meta = {"slug": "synthetic", "scan": "gemma-2-2b", "transcoder_list": [], "prompt_tokens": tokens, "prompt": "".join(tokens),
                "node_threshold": 0.8, "schema_version": 1, "feature_details": {"neuronpedia_source_set": "gemmascope-transcoder-16k"}}
        f.write('{\n  "metadata": ' + json.dumps(meta, indent=2).replace("\n", "\n  ") + ',\n  "qParams": {"pinnedIds": [], '
                '"supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},\n  "nodes": [\n')
        seen = set()
        first = True
        for _ in range(n_features):
            layer, index, pos = rnd.randrange(n_layers), rnd.randrange(16384), rnd.randrange(n_pos)
            nid = f"{layer}_{index}_{pos}"
            if nid in seen:
                continue
            seen.add(nid)
            node_ids.append(nid)
            node = _node(nid, cantor(layer, index), str(layer), pos, "cross layer transcoder", jsNodeId=f"{layer}_{index}-0",
                         influence=rnd.random(), activation=rnd.random() * 10)
            f.write(("" if first else ",\n") + "    " + json.dumps(node, indent=2).replace("\n", "\n    "))
            first = False
        for pos in range(len(tokens)):
            nid = f"E_{1000 + pos}_{pos}"
            node_ids.append(nid)
            f.write(",\n    " + json.dumps(_node(nid, pos, "E", pos, "embedding", jsNodeId=f"E_{1000 + pos}-{pos}"), indent=2).replace("\n", "\n    "))
        f.write('\n  ],\n  "links": [\n')
        n = len(node_ids)
        rand, gauss = rnd.randrange, rnd.gauss
        chunk = []
        for i in range(n_links):
            chunk.append(f'    {{\n      "source": "{node_ids[rand(n)]}",\n      "target": "{node_ids[rand(n)]}",\n      "weight": {gauss(0, 1)!r}\n    }}')
            if len(chunk) == 100_000:
                f.write((",\n" if i >= 100_000 else "") + ",\n".join(chunk))
                chunk = []
        if chunk:
            f.write((",\n" if n_links > len(chunk) else "") + ",\n".join(chunk))
        f.write("\n  ]\n}\n")
    return {"nodes": len(node_ids), "links": n_links}

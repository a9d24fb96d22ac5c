"""featgraph: SAE-feature circuits of attention heads, from the weights alone, as a queryable graph.

    import featgraph as fg
    run = fg.extract(model="google/gemma-2-2b", layer=13, heads=[0, 7], out="exports/layer13")
    atlas = fg.atlas(layers=range(1, 26), out="exports/atlas")   # every layer, one graph
    run = fg.open_run("exports/layer13")
    run.table(head=0, circuit="qk", distinct=True, positive=True, top=20)
    run.query("top_edges", head=7)

Names are imported on first use, so `import featgraph` (and `featgraph --help`) stays instant.
"""

__version__ = "0.1.0"

_API = {
    "Run": "featgraph.api.run",
    "open_run": "featgraph.api.run",
    "import_edges": "featgraph.api.run",
    "import_graph": "featgraph.api.attribution",
    "qk_attribution": "featgraph.api.attribution",
    "qk_trace": "featgraph.api.attribution",
    "to_networkx": "featgraph.api.run",
    "positional": "featgraph.api.run",
    "extract": "featgraph.api.compute",
    "atlas": "featgraph.api.multilayer",
    "sae_info": "featgraph.api.saes",
    "Manifest": "featgraph.runs.manifest",
    "query_library": "featgraph.graph.library",
    "serve": "featgraph.api.run",
    "BadInput": "featgraph.errors",
    "BadValue": "featgraph.errors",
    "FeatgraphError": "featgraph.errors",
    "FeatgraphWarning": "featgraph.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'featgraph' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

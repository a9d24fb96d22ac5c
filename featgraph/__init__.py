"""featgraph: SAE-feature circuits of attention heads, as a queryable graph."""

__version__ = "0.1.0"

__all__ = ["__version__", "to_networkx"]


def __getattr__(name):
    # Lazy, so `featgraph --help` does not import networkx/pandas.
    if name == "to_networkx":
        from featgraph.graph.nx import to_networkx

        return to_networkx
    raise AttributeError(name)

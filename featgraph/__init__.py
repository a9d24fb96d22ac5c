"""featgraph: SAE-feature circuits of attention heads, as a queryable graph."""

__version__ = "0.1.0"

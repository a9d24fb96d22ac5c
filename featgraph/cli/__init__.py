"""The `featgraph` command: a thin typer layer over the API (app.py), one error guard."""

from featgraph.cli.app import app, main

__all__ = ["app", "main"]

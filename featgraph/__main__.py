"""`python -m featgraph …` is the same as the `featgraph` command."""

from featgraph.cli.app import app

app(prog_name="featgraph")

"""`python -m featgraph …` is the same as the `featgraph` command."""

from featgraph.cli import app

app(prog_name="featgraph")

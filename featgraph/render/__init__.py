"""Things people look at: plots, interactive graph pages, the run report."""

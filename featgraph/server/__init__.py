"""`featgraph serve`: a local, read-only web app over a run's store (featgraph.server.server), answering from
featgraph.server.explorer; the page itself is featgraph.render.explorer's."""

"""`featgraph serve`: a local, read-only web app over a run's store (featgraph.serve.server), answering from
featgraph.serve.explorer; the page itself is featgraph.render.explorer's."""

from __future__ import annotations


def serve(run, neo4j: bool = False, host: str = "127.0.0.1", port: int = 8765, timeout: float = 10.0, block: bool = True):
    """Serve `run` (a Run or a run directory) at http://HOST:PORT/ until interrupted (`block`), or in a
    background thread: then the returned Server has `url` and `close()`."""
    from featgraph.serve.server import start

    if not hasattr(run, "edge_table"):
        from featgraph.api.run import open_run

        run = open_run(run)
    server = start(run, neo4j=neo4j, host=host, port=port, timeout=timeout)
    if not block:
        return server.start_thread()
    server.serve_forever()
    return server

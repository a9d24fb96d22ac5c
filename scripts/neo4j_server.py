"""Start and stop scripts/neo4j-server from Python (used by the tests and bench/load.py)."""

from __future__ import annotations

import os
import secrets
import selectors
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

SCRIPT = Path(__file__).with_name("neo4j-server")


@contextmanager
def neo4j_server(data_dir: Path, timeout: float = 300, store_home: Path | None = None):
    """Yield {"uri", "user", "password"} of a fresh server; stop it on exit.

    `store_home`: a Neo4j home holding a database made by `neo4j-admin database import` (NEO4J_HOME=store_home);
    the server serves a copy of it.
    """
    password = secrets.token_hex(12)
    args = [str(SCRIPT), str(data_dir), *([str(Path(store_home).resolve())] if store_home else [])]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, NEO4J_PASSWORD=password), text=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.time() + timeout
    uri = None
    while time.time() < deadline and proc.poll() is None:
        if sel.select(timeout=1):
            uri = proc.stdout.readline().strip()
            break
    try:
        if not uri or not uri.startswith("bolt://"):
            detail = proc.stderr.read()[-2000:] if proc.poll() is not None else "timed out"
            raise RuntimeError(f"Neo4j did not start: {detail}")
        yield {"uri": uri, "user": "neo4j", "password": password}
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

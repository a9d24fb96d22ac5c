"""The embedded Cypher store: LadybugDB (the maintained Kùzu fork), inside the run directory.

No server: the database is a file `graph.lbdb` in the run. `load` builds a new
database beside it and renames it into place, so re-loading replaces, never
duplicates, and an interrupted load leaves the previous store intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from featgraph.errors import BadInput, FeatgraphError
from featgraph.export import Run
from featgraph.graph.model import NODE_LABEL, NODE_PROPS, REL_PROPS, REL_TYPES, node_table, rel_table, run_name

DB_NAME = "graph.lbdb"


def db_path(run: Run) -> Path:
    if run.path is None:
        raise BadInput("the embedded store lives in a run directory: make one with `featgraph import EDGE_FILE --out DIR`")
    return run.path / DB_NAME


def load(run: Run, name: str | None = None) -> dict:
    """(Re)build the run's embedded graph; returns counts."""
    import ladybug as lb

    db_path(run)  # a run directory, not a bare edge file
    tmpdir = Path(tempfile.mkdtemp(prefix=".graph.tmp-", dir=run.path))
    try:
        db = lb.Database(str(tmpdir / DB_NAME))
        conn = lb.Connection(db)
        props = ", ".join(f"{k} {t}" for k, t in NODE_PROPS.items())
        conn.execute(f"CREATE NODE TABLE {NODE_LABEL}({props}, PRIMARY KEY(id))")
        rprops = ", ".join(f"{k} {t}" for k, t in REL_PROPS.items())
        for rel in REL_TYPES:
            conn.execute(f"CREATE REL TABLE {rel}(FROM {NODE_LABEL} TO {NODE_LABEL}, {rprops})")
        nodes = node_table(run)
        _copy(conn, NODE_LABEL, nodes)
        counts = {"nodes": nodes.num_rows}
        rn = run_name(run, name)
        for rel in REL_TYPES:
            rows = rel_table(run, rel, rn)
            if rows.num_rows:
                _copy(conn, rel, rows)
            counts[rel] = rows.num_rows
        conn.close()
        db.close()
        fresh = {p.name for p in tmpdir.iterdir()}
        for stale in run.path.glob(DB_NAME + ".*"):  # sidecars (e.g. a WAL) of the old database
            if stale.name not in fresh:
                stale.unlink()
        for name_ in fresh:  # the new database file (and any sidecar) replace the old ones
            os.replace(tmpdir / name_, run.path / name_)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return counts


def _copy(conn, table: str, rows) -> None:
    # COPY scans a DataFrame / Arrow table from the caller's scope by name.
    frame = rows  # noqa: F841 - referenced by name in the COPY statement
    conn.execute(f"COPY {table} FROM frame")


class EmbeddedStore:
    """Read access to a run's embedded graph (load it first with `load`)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / DB_NAME
        self._db = None
        self._conn = None

    def __enter__(self):
        import ladybug as lb

        if not self.path.parent.is_dir():
            raise BadInput(f"{self.path.parent} is not a run directory: pass one made by `featgraph extract` or `featgraph import`")
        if not self.path.exists():
            raise BadInput(f"{self.path.parent} has no embedded graph yet: run `featgraph load {self.path.parent}` first")
        self._db = lb.Database(str(self.path), read_only=True)
        self._conn = lb.Connection(self._db)
        return self

    def __exit__(self, *exc):
        self._conn.close()
        self._db.close()

    def query(self, cypher: str, params: dict | None = None) -> pd.DataFrame:
        try:
            res = self._conn.execute(cypher, params or {})
        except RuntimeError as e:
            raise FeatgraphError(f"embedded store rejected the query: {str(e).splitlines()[0]}") from None
        return res.get_as_df()

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
from featgraph.graph.rows import NODE_LABEL, NODE_PROPS, REL_PROPS, REL_TYPES, node_table, rel_table

DB_NAME = "graph.lbdb"
_TMP_PREFIX = ".graph.tmp-"


def load(directory: Path, edges: pd.DataFrame, features: pd.DataFrame, run: str) -> dict[str, int]:
    """(Re)build the embedded graph in `directory` (a run directory) from its tables; returns counts.

    One load at a time per directory (a lock file); leftovers of a killed load are removed first.
    """
    import fcntl

    import ladybug as lb

    directory = Path(directory)
    with open(directory / ".graph.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in directory.glob(_TMP_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=directory))
        try:
            db = lb.Database(str(tmpdir / DB_NAME))
            conn = lb.Connection(db)
            props = ", ".join(f"{k} {t}" for k, t in NODE_PROPS.items())
            conn.execute(f"CREATE NODE TABLE {NODE_LABEL}({props}, PRIMARY KEY(id))")
            rprops = ", ".join(f"{k} {t}" for k, t in REL_PROPS.items())
            for rel in REL_TYPES:
                conn.execute(f"CREATE REL TABLE {rel}(FROM {NODE_LABEL} TO {NODE_LABEL}, {rprops})")
            nodes = node_table(features)
            _copy(conn, NODE_LABEL, nodes)
            counts = {"nodes": nodes.num_rows}
            for rel in REL_TYPES:
                rows = rel_table(edges, rel, run)
                if rows.num_rows:
                    _copy(conn, rel, rows)
                counts[rel] = rows.num_rows
            conn.close()
            db.close()
            fresh = {p.name for p in tmpdir.iterdir()}
            for stale in directory.glob(DB_NAME + ".*"):  # sidecars (e.g. a WAL) of the old database
                if stale.name not in fresh:
                    stale.unlink()
            for name in fresh:  # the new database file (and any sidecar) replace the old ones
                os.replace(tmpdir / name, directory / name)
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

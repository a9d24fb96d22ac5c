"""Neo4j: idempotent batched loads and read-only queries over Bolt.

Connection settings come from the environment only — NEO4J_URI,
NEO4J_USERNAME, NEO4J_PASSWORD, NEO4J_DATABASE (and FEATGRAPH_NEO4J_BATCH, rows
per write transaction) — and the password is never printed or written anywhere,
nor is any user:password@ inside the URI.

Each loaded run has a `(:FeatgraphRun {id, status, features, QK, OV, loaded_at})`
node. A load commits status 'loading' before it touches the run's edges and
'complete' after the last batch, so a load that dies leaves 'loading' and queries
refuse the run. Loads of one run are serialised by a lock held for the whole load
(see `_run_lock`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from featgraph.errors import BadInput, FeatgraphError, FeatgraphWarning
from featgraph.files import staged_dir
from featgraph.graph import library
from featgraph.graph.rows import NODE_PROPS, REL_PROPS, REL_TYPES, node_rows, node_table, rel_rows, rel_table

BATCH = 50_000  # rows per transaction; measured faster than 10k on a 2-core machine
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", re.DOTALL)


def redact(uri: str) -> str:
    """`uri` with any `user:password@` replaced by `***@` (up to the last @: a password may hold '/' or '@')."""
    return _USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", uri, count=1)


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str
    user: str
    password: str
    database: str | None
    batch: int = BATCH

    @classmethod
    def from_env(cls) -> Neo4jSettings:
        pw = os.environ.get("NEO4J_PASSWORD")
        if not pw:
            raise BadInput("NEO4J_PASSWORD is not set: export it (and NEO4J_URI, NEO4J_USERNAME) before using --neo4j")
        raw = os.environ.get("FEATGRAPH_NEO4J_BATCH") or str(BATCH)
        if not raw.strip().isdigit() or int(raw) < 1:
            raise BadInput(f"FEATGRAPH_NEO4J_BATCH must be a positive whole number of rows per transaction, got {raw!r}")
        return cls(os.environ.get("NEO4J_URI", "bolt://localhost:7687"), os.environ.get("NEO4J_USERNAME", "neo4j"),
                   pw, os.environ.get("NEO4J_DATABASE") or None, int(raw))

    def __repr__(self) -> str:  # never show the password, in the URI either
        return f"Neo4jSettings(uri={redact(self.uri)!r}, user={self.user!r}, database={self.database!r}, batch={self.batch})"


class Neo4jStore:
    def __init__(self, settings: Neo4jSettings):
        self.settings = settings
        self._driver = None

    def __enter__(self):
        from neo4j import GraphDatabase
        from neo4j import exceptions as neo4j_errors

        s = self.settings
        where = redact(s.uri)
        try:
            # Server notifications (e.g. "property key does not exist" before any label is loaded) are not errors.
            self._driver = GraphDatabase.driver(s.uri, auth=(s.user, s.password), notifications_min_severity="OFF")
            self._driver.verify_connectivity()
        except neo4j_errors.AuthError:
            self._close()
            raise FeatgraphError(f"Neo4j at {where} refused the credentials for user {s.user!r}: check NEO4J_USERNAME and NEO4J_PASSWORD") from None
        except (neo4j_errors.ServiceUnavailable, neo4j_errors.DriverError, OSError, ValueError) as e:
            self._close()
            raise FeatgraphError(f"cannot reach Neo4j at {where} ({e.__class__.__name__}): "
                                 "start it (`docker compose up -d`) or set NEO4J_URI") from None
        return self

    def __exit__(self, *exc):
        self._close()

    def _close(self):
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def _session(self, read: bool):
        from neo4j import READ_ACCESS, WRITE_ACCESS

        return self._driver.session(database=self.settings.database, default_access_mode=READ_ACCESS if read else WRITE_ACCESS)

    def load(self, edges: pd.DataFrame, features: pd.DataFrame, run: str,
             progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Upsert features, replace the edges of run `run` (its id); safe to re-run, and to run twice at once."""
        batch = self.settings.batch
        with self._session(read=False) as s:
            for stmt in library.statements(library.internal("neo4j_schema")):
                s.run(stmt).consume()
            s.run("CALL db.awaitIndexes(300)").consume()
            with self._run_lock(run):
                s.execute_write(lambda tx: tx.run(library.internal("neo4j_run_loading"), run=run).consume())
                nodes = node_table(features)
                write_nodes = library.internal("neo4j_nodes")
                for b in nodes.to_batches(batch):
                    cols = b.to_pydict()
                    s.execute_write(lambda tx, c=cols: tx.run(write_nodes, c).consume())
                counts = {"nodes": nodes.num_rows}
                for rel in REL_TYPES:
                    s.run(library.internal(f"neo4j_delete_run_{rel.lower()}"), run=run).consume()
                for rel in REL_TYPES:
                    rows = rel_table(edges, rel, run)
                    create = library.internal(f"neo4j_edges_{rel.lower()}")
                    for b in rows.to_batches(batch):
                        cols = b.drop_columns(["circuit", "run"]).to_pydict() | {"circuit": rel, "run": run}
                        s.execute_write(lambda tx, c=cols: tx.run(create, c).consume())
                        if progress:
                            progress(b.num_rows)
                    counts[rel] = rows.num_rows
                s.execute_write(lambda tx: tx.run(library.internal("neo4j_run_complete"), run=run, features=counts["nodes"],
                                                  QK=counts["QK"], OV=counts["OV"]).consume())
        return counts

    @contextmanager
    def _run_lock(self, run: str) -> Iterator[None]:
        """Hold a lock on run `run` until the block ends; a second load of the run waits here for the first.

        The lock is a `FeatgraphLoadLock` node MERGEd, under a uniqueness constraint, in a transaction on its
        own session that stays open and is rolled back at the end (nothing of it is ever stored): a concurrent
        MERGE of the same run blocks until then. If this process dies, the server ends the transaction with
        the connection, so a killed load never leaves a stale lock.
        """
        with self._session(read=False) as lock_session:
            tx = lock_session.begin_transaction()
            try:
                tx.run(library.internal("neo4j_run_lock"), run=run).consume()
                yield
            finally:
                tx.rollback()

    def query(self, cypher: str, params: dict | None = None, write: bool = False, run: str | None = None) -> pd.DataFrame:
        """Rows of `cypher`. With `run` (a run id, or `*` for all), the runs' loads must have finished first:
        an unfinished run is an error, or a FeatgraphWarning for `*`. Runs without a FeatgraphRun node
        (bulk-imported by an older featgraph, or never loaded) are not checked."""
        from neo4j import exceptions as neo4j_errors

        unfinished: list[str] = []

        def work(tx):
            if run is not None:
                unfinished[:] = [r["id"] for r in tx.run(library.internal("neo4j_run_unfinished"), run=run)]
                if unfinished and run != "*":
                    raise FeatgraphError(f"the Neo4j load of run {run} did not finish (or is still running): "
                                         "re-run `featgraph load RUN --neo4j`")
            res = tx.run(cypher, params or {})
            keys = list(res.keys())
            return keys, [r.values() for r in res]

        try:
            with self._session(read=not write) as s:
                keys, rows = (s.execute_write if write else s.execute_read)(work)
        except neo4j_errors.ClientError as e:
            hint = " (the query writes: pass --write)" if "access mode" in (e.message or "").lower() or "AccessMode" in (e.code or "") else ""
            raise FeatgraphError(f"Neo4j rejected the query: {(e.message or e.code or '').splitlines()[0]}{hint}") from None
        if unfinished:
            warnings.warn(f"the Neo4j load of run {', '.join(unfinished)} did not finish (or is still running): its edges in "
                          "this answer may be partial; re-run `featgraph load RUN --neo4j`", FeatgraphWarning, stacklevel=2)
        return pd.DataFrame(rows, columns=keys)


def export_admin_csv(edges: pd.DataFrame, features: pd.DataFrame, run: str, out: Path, force: bool = False) -> list[str]:
    """CSV files for `neo4j-admin database import full`; returns the command to run (absolute paths, so it
    runs from any directory; the database name right after `full`: from Neo4j 5.19 the variadic --nodes and
    --relationships would take a name at the end for one more file)."""
    out = Path(out).resolve()
    types = {"INT64": "long", "DOUBLE": "double", "STRING": "string"}
    counts = {rel: int((edges["circuit"] == rel).sum()) for rel in REL_TYPES}
    with staged_dir(out, force, kind="neo4j-import") as tmp:
        nodes = node_rows(features)
        nodes.columns = [f"{c}:ID(Feature)" if c == "id" else (c if types[NODE_PROPS[c]] == "string" else f"{c}:{types[NODE_PROPS[c]]}")
                         for c in nodes.columns]
        nodes[":LABEL"] = "Feature"
        nodes.to_csv(tmp / "features.csv", index=False)
        # The run's node, as a finished load leaves it, so queries accept the imported run.
        pd.DataFrame([{"id:ID(FeatgraphRun)": run, "status": "complete", "features:long": len(nodes),
                       **{f"{rel}:long": n for rel, n in counts.items()}, ":LABEL": "FeatgraphRun"}]).to_csv(tmp / "runs.csv", index=False)
        for rel in REL_TYPES:
            r = rel_rows(edges, rel, run)
            r.columns = [":START_ID(Feature)", ":END_ID(Feature)"] + [
                c if types[REL_PROPS[c]] == "string" else f"{c}:{types[REL_PROPS[c]]}" for c in r.columns[2:]]
            r[":TYPE"] = rel
            r.to_csv(tmp / f"{rel.lower()}.csv", index=False)
    return ["neo4j-admin", "database", "import", "full", "neo4j", f"--nodes=Feature={out / 'features.csv'}",
            f"--nodes=FeatgraphRun={out / 'runs.csv'}",
            *(f"--relationships={rel}={out / f'{rel.lower()}.csv'}" for rel in REL_TYPES)]

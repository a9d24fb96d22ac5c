"""Neo4j: idempotent batched loads and read-only queries over Bolt.

Connection settings come from the environment only — NEO4J_URI,
NEO4J_USERNAME, NEO4J_PASSWORD, NEO4J_DATABASE — and the password is never
printed or written anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from featgraph.errors import BadInput, FeatgraphError
from featgraph.files import staged_dir
from featgraph.graph import library
from featgraph.graph.rows import NODE_PROPS, REL_PROPS, REL_TYPES, node_rows, node_table, rel_rows, rel_table

BATCH = 50_000  # rows per transaction; measured faster than 10k on a 2-core machine


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str
    user: str
    password: str
    database: str | None

    @classmethod
    def from_env(cls) -> Neo4jSettings:
        pw = os.environ.get("NEO4J_PASSWORD")
        if not pw:
            raise BadInput("NEO4J_PASSWORD is not set: export it (and NEO4J_URI, NEO4J_USERNAME) before using --neo4j")
        return cls(os.environ.get("NEO4J_URI", "bolt://localhost:7687"), os.environ.get("NEO4J_USERNAME", "neo4j"),
                   pw, os.environ.get("NEO4J_DATABASE") or None)

    def __repr__(self) -> str:  # never show the password
        return f"Neo4jSettings(uri={self.uri!r}, user={self.user!r}, database={self.database!r})"


class Neo4jStore:
    def __init__(self, settings: Neo4jSettings):
        self.settings = settings
        self._driver = None

    def __enter__(self):
        from neo4j import GraphDatabase
        from neo4j import exceptions as neo4j_errors

        s = self.settings
        try:
            # Server notifications (e.g. "property key does not exist" before any label is loaded) are not errors.
            self._driver = GraphDatabase.driver(s.uri, auth=(s.user, s.password), notifications_min_severity="OFF")
            self._driver.verify_connectivity()
        except neo4j_errors.AuthError:
            self._close()
            raise FeatgraphError(f"Neo4j at {s.uri} refused the credentials for user {s.user!r}: check NEO4J_USERNAME and NEO4J_PASSWORD") from None
        except (neo4j_errors.ServiceUnavailable, neo4j_errors.DriverError, OSError, ValueError) as e:
            self._close()
            raise FeatgraphError(f"cannot reach Neo4j at {s.uri} ({e.__class__.__name__}): "
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
        """Upsert features, replace the edges of run `run` (its id); safe to re-run."""
        rn = run
        with self._session(read=False) as s:
            for stmt in library.statements(library.internal("neo4j_schema")):
                s.run(stmt).consume()
            s.run("CALL db.awaitIndexes(300)").consume()
            nodes = node_table(features)
            write_nodes = library.internal("neo4j_nodes")
            for batch in nodes.to_batches(BATCH):
                cols = batch.to_pydict()
                s.execute_write(lambda tx, c=cols: tx.run(write_nodes, c).consume())
            counts = {"nodes": nodes.num_rows}
            for rel in REL_TYPES:
                s.run(library.internal(f"neo4j_delete_run_{rel.lower()}"), run=rn).consume()
            for rel in REL_TYPES:
                rows = rel_table(edges, rel, rn)
                create = library.internal(f"neo4j_edges_{rel.lower()}")
                for batch in rows.to_batches(BATCH):
                    cols = batch.drop_columns(["circuit", "run"]).to_pydict() | {"circuit": rel, "run": rn}
                    s.execute_write(lambda tx, c=cols: tx.run(create, c).consume())
                    if progress:
                        progress(batch.num_rows)
                counts[rel] = rows.num_rows
        return counts

    def query(self, cypher: str, params: dict | None = None, write: bool = False) -> pd.DataFrame:
        from neo4j import exceptions as neo4j_errors

        def work(tx):
            res = tx.run(cypher, params or {})
            keys = list(res.keys())
            return keys, [r.values() for r in res]

        try:
            with self._session(read=not write) as s:
                keys, rows = (s.execute_write if write else s.execute_read)(work)
        except neo4j_errors.ClientError as e:
            hint = " (the query writes: pass --write)" if "access mode" in (e.message or "").lower() or "AccessMode" in (e.code or "") else ""
            raise FeatgraphError(f"Neo4j rejected the query: {(e.message or e.code or '').splitlines()[0]}{hint}") from None
        return pd.DataFrame(rows, columns=keys)


def export_admin_csv(edges: pd.DataFrame, features: pd.DataFrame, run: str, out: Path, force: bool = False) -> list[str]:
    """CSV files for `neo4j-admin database import full`; returns the command to run."""
    rn = run
    types = {"INT64": "long", "DOUBLE": "double", "STRING": "string"}
    with staged_dir(Path(out), force, kind="neo4j-import") as tmp:
        nodes = node_rows(features)
        nodes.columns = [f"{c}:ID(Feature)" if c == "id" else (c if types[NODE_PROPS[c]] == "string" else f"{c}:{types[NODE_PROPS[c]]}")
                         for c in nodes.columns]
        nodes[":LABEL"] = "Feature"
        nodes.to_csv(tmp / "features.csv", index=False)
        for rel in REL_TYPES:
            r = rel_rows(edges, rel, rn)
            r.columns = [":START_ID(Feature)", ":END_ID(Feature)"] + [
                c if types[REL_PROPS[c]] == "string" else f"{c}:{types[REL_PROPS[c]]}" for c in r.columns[2:]]
            r[":TYPE"] = rel
            r.to_csv(tmp / f"{rel.lower()}.csv", index=False)
    return ["neo4j-admin", "database", "import", "full", f"--nodes=Feature={Path(out) / 'features.csv'}",
            f"--relationships=QK={Path(out) / 'qk.csv'}", f"--relationships=OV={Path(out) / 'ov.csv'}", "neo4j"]

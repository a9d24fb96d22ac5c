"""Neo4j: idempotent batched loads and read-only queries over Bolt.

Connection settings come from the environment only — NEO4J_URI,
NEO4J_USERNAME, NEO4J_PASSWORD, NEO4J_DATABASE (and FEATGRAPH_NEO4J_BATCH, rows
per write transaction) — and the password is never printed or written anywhere,
nor is any user:password@, query string or fragment of the URI.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from featgraph.errors import BadInput, FeatgraphError, FeatgraphWarning
from featgraph.graph import library
from featgraph.graph.rows import (
    DEGREE_PROPS,
    GRAPH_PROPS,
    NODE_PROPS,
    PROMPT_PROPS,
    REL_TYPES,
    STORE_REL_PROPS,
    GraphFiles,
    degree_table,
    graph_table,
    link_batches,
    node_table,
    of_table,
    path_ranks,
    prompt_node_table,
    store_rel_table,
    with_graph_features,
)
from featgraph.runs.files import staged_dir

BATCH = 50_000  # rows per transaction; measured faster than 10k on a 2-core machine
LOAD_FORMAT = 3  # what a load writes (edge properties, Degree rows); part of the fingerprint, so a change rewrites
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def redact(uri: str) -> str:
    """`uri` as scheme://host:port only: a `user:password@` becomes `***@` (up to the last @: a password may hold
    '/', '?' or '@'), a query string or fragment (`?apikey=…`, `?auth=…`, `#…`) `?***`, a path other than `/` `/***`."""
    m = _SCHEME.match(uri)
    scheme, rest = (m.group(0), uri[m.end():]) if m else ("", uri)
    tail = rest.rsplit("@", 1)[-1]
    host = re.split(r"[/?#]", tail, maxsplit=1)[0]
    path = re.split(r"[?#]", tail[len(host):], maxsplit=1)[0]
    path = path if path in ("", "/") else "/***"
    return scheme + ("***@" if "@" in rest else "") + host + path + ("?***" if re.search(r"[?#]", rest) else "")


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
    def __init__(self, settings: Neo4jSettings, timeout: float | None = None):
        """`timeout`: seconds a query's transaction may run before the server stops it (None: the server's limit)."""
        self.settings = settings
        self.timeout = timeout
        self._driver = None

    def __enter__(self):
        from neo4j import GraphDatabase
        from neo4j import exceptions as neo4j_errors

        s = self.settings
        where = redact(s.uri)
        try:
            # Server notifications (e.g. "property key does not exist" before any label is loaded) are not errors.
            with warnings.catch_warnings(record=True) as said:  # the driver's warnings quote the URI whole
                warnings.simplefilter("always")
                self._driver = GraphDatabase.driver(s.uri, auth=(s.user, s.password), notifications_min_severity="OFF")
            for w in said:
                warnings.warn(str(w.message).replace(s.uri, where), FeatgraphWarning, stacklevel=2)
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
             progress: Callable[[int], None] | None = None, graphs: Sequence[GraphFiles] = (),
             source: str | None = None, force: bool = False) -> dict[str, int]:
        """Upsert features, replace the edges and Degree rows of run `run` (the name they are stored under); safe to
        re-run, and to run twice at once. A re-load of the same edges that the store still holds as they were
        written rewrites only the features (their labels may have changed). Each attribution graph's nodes and
        links are replaced (by the graph's id), its feature nodes tied to the Features.

        `source`: the run id of the run the edges come from (default `run`), recorded on its FeatgraphRun node;
        when the store holds another run's edges under `run`, the load is refused (BadInput) unless `force`.
        A run node without a recorded source (loaded by an older featgraph) is replaced."""
        source = source or run
        batch = self.settings.batch
        graph_nodes = {g.id: g.nodes() for g in graphs}
        features = with_graph_features(features, list(graph_nodes.values()))
        ranks = path_ranks(edges)
        rels = {rel: store_rel_table(edges, rel, run, ranks) for rel in REL_TYPES}
        degrees = degree_table(edges, run)
        fingerprint = _fingerprint(rels, degrees)
        counts = {"nodes": len(features), **{rel: t.num_rows for rel, t in rels.items()}}
        with self._session(read=False) as s:
            _schema(s, "neo4j_schema")
            with self._run_lock(run):
                held = s.execute_read(lambda tx: [r["source"] for r in tx.run(library.internal("neo4j_run_source"), run=run)])
                if held and held[0] is not None and held[0] != source and not force:
                    raise BadInput(f"Neo4j already holds run {held[0]} under the name {run}, and this is run {source}: "
                                   "load it under another name (--run-name), or pass force=True (--force) to replace it")
                holds = s.execute_read(lambda tx: [r["holds"] for r in tx.run(library.internal("neo4j_run_holds"),
                                                                              run=run, fingerprint=fingerprint)])
                s.execute_write(lambda tx: tx.run(library.internal("neo4j_run_loading"), run=run, source=source).consume())
                element = self._write_features(s, node_table(features), batch)
                if holds == [True]:
                    if progress:
                        progress(len(edges))
                else:
                    self._write_edges(s, run, rels, degrees, element, batch, progress)
                s.execute_write(lambda tx: tx.run(library.internal("neo4j_run_complete"), run=run, features=counts["nodes"],
                                                  QK=counts["QK"], OV=counts["OV"], degrees=degrees.num_rows,
                                                  fingerprint=fingerprint).consume())
                for g in graphs:
                    counts["links"] = counts.get("links", 0) + self._write_graph(s, g, graph_nodes[g.id], element, batch)
                if graphs:
                    counts["graphs"] = len(graphs)
            # Outside the lock: creating an index waits for open transactions, and a second load of this run
            # holds one open while it waits for the lock.
            _schema(s, "neo4j_indexes")
        return counts

    @staticmethod
    def _write_features(s, nodes, batch: int) -> dict[str, str]:
        """MERGE the features; returns each one's element id."""
        write_nodes = library.internal("neo4j_nodes")
        element: dict[str, str] = {}
        for b in nodes.to_batches(batch):
            cols = b.to_pydict()
            element.update(s.execute_write(lambda tx, c=cols: [tuple(r.values()) for r in tx.run(write_nodes, c)]))
        return element

    @staticmethod
    def _write_edges(s, run: str, rels: dict, degrees, element: dict[str, str], batch: int,
                     progress: Callable[[int], None] | None) -> None:
        """Delete the run's edges and Degree rows, then create them anew (ends found by element id)."""
        for name in ("neo4j_delete_run_qk", "neo4j_delete_run_ov", "neo4j_delete_run_degree"):
            s.run(library.internal(name), run=run).consume()
        for rel, rows in rels.items():
            create = library.internal(f"neo4j_edges_{rel.lower()}")
            for b in rows.to_batches(batch):
                cols = b.drop_columns(["circuit", "run"]).to_pydict() | {"circuit": rel, "run": run}
                cols["src"] = [element[f] for f in cols["src"]]
                cols["dst"] = [element[f] for f in cols["dst"]]
                made = s.execute_write(lambda tx, c=cols: tx.run(create, c).consume().counters.relationships_created)
                if made != b.num_rows:  # an end vanished mid-load (deleted by a concurrent write query)
                    raise FeatgraphError(f"the Neo4j load of run {run} wrote {made} of a batch of {b.num_rows} {rel} edges: "
                                         "a feature node was deleted during the load; re-run `featgraph load RUN --neo4j`")
                if progress:
                    progress(b.num_rows)
        write_degrees = library.internal("neo4j_degree")
        for b in degrees.to_batches(batch):
            cols = b.drop_columns(["run"]).to_pydict() | {"run": run}
            s.execute_write(lambda tx, c=cols: tx.run(write_degrees, c).consume())

    @staticmethod
    def _write_graph(s, g: GraphFiles, nodes, element: dict[str, str], batch: int) -> int:
        """Replace attribution graph g: its node (status 'loading' until the end), prompt nodes, OF ties, links."""
        props = {k: v for k, v in graph_table([{**g.info, "id": g.id}]).to_pylist()[0].items() if k in GRAPH_PROPS and k != "id"}
        s.execute_write(lambda tx: tx.run(library.internal("neo4j_graph_loading"), id=g.id, props=props).consume())
        for name in ("neo4j_graph_delete_links", "neo4j_graph_delete_nodes"):
            s.run(library.internal(name), graph=g.id).consume()
        prompt: dict[str, str] = {}
        rows = prompt_node_table(nodes, g.id)
        for b in rows.to_batches(batch):
            maps = [{k: v for k, v in r.items() if v is not None} for r in b.to_pylist()]
            prompt.update(s.execute_write(lambda tx, m=maps: [tuple(r.values()) for r in tx.run(library.internal("neo4j_prompt_nodes"), rows=m)]))
        of = of_table(nodes, g.id)
        for b in of.to_batches(batch):
            c = {"src": [prompt[k] for k in b.column("src").to_pylist()], "dst": [element[f] for f in b.column("dst").to_pylist()]}
            s.execute_write(lambda tx, c=c: tx.run(library.internal("neo4j_of"), c).consume())
        n = 0
        create = library.internal("neo4j_attribution_links")
        for b in link_batches(g.links_path, g.id, batch):
            c = {"src": [prompt[k] for k in b.column("src").to_pylist()], "dst": [prompt[k] for k in b.column("dst").to_pylist()],
                 "weight": b.column("weight").to_pylist(), "graph": g.id}
            made = s.execute_write(lambda tx, c=c: tx.run(create, c).consume().counters.relationships_created)
            if made != b.num_rows:
                raise FeatgraphError(f"the Neo4j load of attribution graph {g.id} wrote {made} of a batch of {b.num_rows} links: "
                                     "a prompt node was deleted during the load; re-run `featgraph load RUN --neo4j`")
            n += made
        s.execute_write(lambda tx: tx.run(library.internal("neo4j_graph_complete"), id=g.id).consume())
        return n

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

    def query(self, cypher: str, params: dict | None = None, write: bool = False, run: str | None = None,
              graph: str | None = None) -> pd.DataFrame:
        """Rows of `cypher`. With `run` (a run id, or `*` for all), the runs' loads must have finished first:
        an unfinished run is an error, or a FeatgraphWarning for `*`. Runs without a FeatgraphRun node
        (bulk-imported by an older featgraph, or never loaded) are not checked. With `graph` (an attribution
        graph's id), the graph must be in the store and its load finished."""
        from neo4j import exceptions as neo4j_errors
        from neo4j import unit_of_work

        unfinished: list[str] = []

        @unit_of_work(timeout=self.timeout)
        def work(tx):
            if run is not None:
                unfinished[:] = [r["id"] for r in tx.run(library.internal("neo4j_run_unfinished"), run=run)]
                if unfinished and run != "*":
                    raise FeatgraphError(f"the Neo4j load of run {run} did not finish (or is still running): "
                                         "re-run `featgraph load RUN --neo4j`")
            if graph is not None:
                status = [r["status"] for r in tx.run(library.internal("neo4j_graph_status"), graph=graph)]
                if not status:
                    raise FeatgraphError(f"Neo4j holds no attribution graph {graph}: load the run that holds it with "
                                         "`featgraph load RUN --neo4j`")
                if status != ["complete"]:
                    raise FeatgraphError(f"the Neo4j load of attribution graph {graph} did not finish (or is still running): "
                                         "re-run `featgraph load RUN --neo4j`")
            res = tx.run(cypher, params or {})
            keys = list(res.keys())
            return keys, [r.values() for r in res]

        try:
            with self._session(read=not write) as s:
                keys, rows = (s.execute_write if write else s.execute_read)(work)
        except neo4j_errors.ClientError as e:
            if self.timeout is not None and "TransactionTimedOut" in (e.code or ""):
                raise FeatgraphError(f"the query ran past the {self.timeout:g} s limit and was stopped: narrow it (a LIMIT, "
                                     "a feature or head to start from)") from None
            hint = " (the query writes: pass --write)" if "access mode" in (e.message or "").lower() or "AccessMode" in (e.code or "") else ""
            bad = BadInput if isinstance(e, neo4j_errors.CypherSyntaxError) else FeatgraphError  # syntax: exit 2
            raise bad(f"Neo4j rejected the query: {(e.message or e.code or '').splitlines()[0]}{hint}") from None
        if unfinished:
            warnings.warn(f"the Neo4j load of run {', '.join(unfinished)} did not finish (or is still running): its edges in "
                          "this answer may be partial; re-run `featgraph load RUN --neo4j`", FeatgraphWarning, stacklevel=2)
        return pd.DataFrame(rows, columns=keys)


def _schema(s, name: str) -> None:
    """Run the schema statements of cypher/store/NAME.cypher and wait for the indexes to be online. Two loads
    at once may deadlock on the schema (retried) or both create one index (the second's is already there)."""
    from neo4j import exceptions as neo4j_errors

    for stmt in library.statements(library.internal(name)):
        try:
            s.execute_write(lambda tx, st=stmt: tx.run(st).consume())
        except neo4j_errors.ClientError as e:
            if "AlreadyExists" not in (e.code or ""):
                raise
    s.run("CALL db.awaitIndexes(600)").consume()


def _fingerprint(rels: dict, degrees) -> str:
    """sha256 of what a load writes for the run: its edge rows, Degree rows and LOAD_FORMAT."""
    import hashlib

    import pyarrow as pa

    h = hashlib.sha256(f"featgraph-load-{LOAD_FORMAT}".encode())
    for table in (*rels.values(), degrees):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        h.update(sink.getvalue())
    return h.hexdigest()


def export_admin_csv(edges: pd.DataFrame, features: pd.DataFrame, run: str, out: Path, force: bool = False,
                     graphs: Sequence[GraphFiles] = (), source: str | None = None) -> list[str]:
    """CSV files for `neo4j-admin database import full`, with what an online load writes (the derived
    path ranks and Degree rows, the run's 'complete' node) and schema.cypher, the constraints and indexes to
    create once the server is up; returns the command to run (absolute paths, so it runs from any directory;
    the database name right after `full`: from Neo4j 5.19 the variadic --nodes and --relationships would
    take a name at the end for one more file). Attribution `graphs` add graphs.csv, prompt_nodes.csv, of.csv and
    attribution.csv (the links streamed from their Parquet files), each graph 'complete'; their prompt tokens are
    a string array split on U+001F (--array-delimiter), so a token holding that character is refused. `source`: the
    run id the edges come from (default `run`), recorded on the run's node as a load records it."""
    import pyarrow as pa
    from pyarrow import csv

    out = Path(out).resolve()
    types = {"INT64": "long", "DOUBLE": "double", "STRING": "string", "BOOL": "boolean", "STRING[]": "string[]"}

    def header(name: str, typ: str) -> str:
        return name if types[typ] == "string" else f"{name}:{types[typ]}"

    def write(table: pa.Table, names: list[str], label: tuple[str, str], path: Path) -> None:
        table = table.rename_columns(names)
        csv.write_csv(table.append_column(label[0], pa.repeat(label[1], table.num_rows)), path)

    ranks = path_ranks(edges)
    rels = {rel: store_rel_table(edges, rel, run, ranks) for rel in REL_TYPES}
    degrees = degree_table(edges, run)
    graph_nodes = {g.id: g.nodes() for g in graphs}
    features = with_graph_features(features, list(graph_nodes.values()))
    with staged_dir(out, force, kind="neo4j-import") as tmp:
        nodes = node_table(features)
        write(nodes, [f"{c}:ID(Feature)" if c == "id" else header(c, NODE_PROPS[c]) for c in nodes.column_names],
              (":LABEL", "Feature"), tmp / "features.csv")
        for rel, table in rels.items():
            write(table, [":START_ID(Feature)", ":END_ID(Feature)", *(header(c, STORE_REL_PROPS[c]) for c in table.column_names[2:])],
                  (":TYPE", rel), tmp / f"{rel.lower()}.csv")
        write(degrees, [f"{c}:ID(Degree)" if c == "key" else header(c, DEGREE_PROPS[c]) for c in degrees.column_names],
              (":LABEL", "Degree"), tmp / "degree.csv")
        # The run's node, as a finished load leaves it, so queries accept the imported run.
        pd.DataFrame([{"id:ID(FeatgraphRun)": run, "source": source or run, "status": "complete", "features:long": nodes.num_rows,
                       **{f"{rel}:long": t.num_rows for rel, t in rels.items()}, "degrees:long": degrees.num_rows,
                       "fingerprint": _fingerprint(rels, degrees), ":LABEL": "FeatgraphRun"}]).to_csv(tmp / "runs.csv", index=False)
        if graphs:
            _graph_csvs(tmp, graphs, graph_nodes, header, write)
        schema = [*library.statements(library.internal("neo4j_schema")), *library.statements(library.internal("neo4j_indexes"))]
        (tmp / "schema.cypher").write_text("".join(f"{st};\n" for st in schema if not st.startswith("DROP")), encoding="utf-8")
    # --multiline-fields: a label may hold a newline (quoted in the CSV); without it neo4j-admin stops there
    return ["neo4j-admin", "database", "import", "full", "neo4j", "--multiline-fields=true",
            f"--nodes=Feature={out / 'features.csv'}",
            f"--nodes=FeatgraphRun={out / 'runs.csv'}", f"--nodes=Degree={out / 'degree.csv'}",
            *(f"--relationships={rel}={out / f'{rel.lower()}.csv'}" for rel in REL_TYPES),
            *([f"--nodes=AttributionGraph={out / 'graphs.csv'}", f"--nodes=PromptNode={out / 'prompt_nodes.csv'}",
               f"--relationships=OF={out / 'of.csv'}", f"--relationships=ATTRIBUTION={out / 'attribution.csv'}",
               f"--array-delimiter={ARRAY_DELIMITER}"] if graphs else [])]


ARRAY_DELIMITER = "U+001F"  # neo4j-admin's notation for the unit separator, which splits the prompt tokens


def _graph_csvs(tmp: Path, graphs: Sequence[GraphFiles], graph_nodes: dict, header, write) -> None:
    """The attribution graphs' CSVs for neo4j-admin (what an online load writes, each graph 'complete')."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    infos = [{**g.info, "id": g.id} for g in graphs]
    for info in infos:
        bad = [t for t in info.get("prompt_tokens") or [] if "\x1f" in t]
        if bad:
            raise BadInput(f"graph {info['id']}: a prompt token holds U+001F, the array delimiter of the bulk import: "
                           "load it online with `featgraph load RUN --neo4j`")
    t = graph_table(infos)
    t = t.set_column(t.column_names.index("prompt_tokens"), "prompt_tokens",
                     pc.binary_join(t.column("prompt_tokens"), "\x1f"))
    t = t.append_column("status", pa.repeat("complete", t.num_rows).cast(pa.string()))
    write(t, [f"{c}:ID(AttributionGraph)" if c == "id" else header(c, GRAPH_PROPS[c]) if c in GRAPH_PROPS else c
              for c in t.column_names], (":LABEL", "AttributionGraph"), tmp / "graphs.csv")
    prompt = pa.concat_tables([prompt_node_table(graph_nodes[g.id], g.id) for g in graphs])
    write(prompt, [f"{c}:ID(PromptNode)" if c == "key" else header(c, PROMPT_PROPS[c]) for c in prompt.column_names],
          (":LABEL", "PromptNode"), tmp / "prompt_nodes.csv")
    of = pa.concat_tables([of_table(graph_nodes[g.id], g.id) for g in graphs])
    write(of, [":START_ID(PromptNode)", ":END_ID(Feature)"], (":TYPE", "OF"), tmp / "of.csv")
    names = [":START_ID(PromptNode)", ":END_ID(PromptNode)", "graph", "weight:double", ":TYPE"]
    schema = pa.schema([(n, pa.string()) for n in names[:3]] + [(names[3], pa.float64()), (names[4], pa.string())])
    with csv.CSVWriter(tmp / "attribution.csv", schema) as w:
        for g in graphs:
            for b in link_batches(g.links_path, g.id):
                w.write_table(pa.table([*b.columns, pa.repeat("ATTRIBUTION", b.num_rows).cast(pa.string())], schema=schema))

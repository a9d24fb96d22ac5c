"""The embedded Cypher store: LadybugDB (the maintained Kùzu fork), inside the run directory.

No server: the database is a file `graph.lbdb` in the run. `load` builds a new
database beside it and renames it into place, so re-loading replaces, never
duplicates, and an interrupted load leaves the previous store intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from featgraph.errors import BadInput, FeatgraphError, MissingValue
from featgraph.graph.rows import (
    DEGREE_LABEL,
    DEGREE_PROPS,
    GRAPH_LABEL,
    GRAPH_PROPS,
    LINK_PROPS,
    LINK_TYPE,
    NODE_LABEL,
    NODE_PROPS,
    OF_TYPE,
    PROMPT_LABEL,
    PROMPT_PROPS,
    REL_TYPES,
    STORE_REL_PROPS,
    GraphFiles,
    degree_table,
    graph_table,
    node_table,
    of_table,
    path_ranks,
    prompt_node_table,
    store_rel_table,
    with_graph_features,
)
from featgraph.graph.tokens import Token, parameters, return_items, tokenize
from featgraph.runs.files import DB_NAME

_TMP_PREFIX = ".graph.tmp-"

# A read-only LadybugDB still reads and writes files on request (COPY … TO, EXPORT DATABASE, LOAD FROM,
# CALL read_csv…), fetches and loads extensions (INSTALL, LOAD EXTENSION), attaches other databases,
# changes settings (CALL home_directory=…), and CHECKPOINT leaves the store unopenable read-only; it has
# no setting that turns file or extension access off. So a query is refused before it runs if any bare
# word is one of these statement keywords (a name spelled so needs backticks) ...
_REFUSED = frozenset([
    "copy", "export", "import", "load", "install", "uninstall", "update", "attach", "detach", "use",
    "checkpoint", "begin", "commit", "rollback", "commit_skip_checkpoint", "rollback_skip_checkpoint",
    "analyze", "create", "merge", "set", "delete", "drop", "alter", "comment",
])
# ... or if CALL names anything but one of these table functions, which only describe the database.
_CALLABLE = frozenset([
    "show_tables", "table_info", "show_connection", "show_functions", "show_indexes", "show_macros",
    "show_warnings", "current_setting", "db_version",
])


def load(directory: Path, edges: pd.DataFrame, features: pd.DataFrame, run: str, graphs: Sequence[GraphFiles] = ()) -> dict[str, int]:
    """(Re)build the embedded graph in `directory` (a run directory) from its tables and attribution graphs; returns
    counts.

    One load at a time per directory (a lock file); leftovers of a killed load are removed first.
    """
    import fcntl

    import ladybug as lb

    from featgraph.runs.files import open_lock, remove_stale

    directory = Path(directory)
    lock = open_lock(directory / ".graph.lock")  # never through a link: it is not truncated or followed
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        remove_stale(directory.glob(_TMP_PREFIX + "*"))
        tmpdir = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=directory))
        try:
            db = lb.Database(str(tmpdir / DB_NAME))
            conn = lb.Connection(db)
            props = ", ".join(f"{k} {t}" for k, t in NODE_PROPS.items())
            conn.execute(f"CREATE NODE TABLE {NODE_LABEL}({props}, PRIMARY KEY(id))")
            rprops = ", ".join(f"{k} {t}" for k, t in STORE_REL_PROPS.items())
            for rel in REL_TYPES:
                conn.execute(f"CREATE REL TABLE {rel}(FROM {NODE_LABEL} TO {NODE_LABEL}, {rprops})")
            dprops = ", ".join(f"{k} {t}" for k, t in DEGREE_PROPS.items())
            conn.execute(f"CREATE NODE TABLE {DEGREE_LABEL}({dprops}, PRIMARY KEY(key))")
            _create_graph_tables(conn)
            graph_nodes = {g.id: g.nodes() for g in graphs}
            nodes = node_table(with_graph_features(features, list(graph_nodes.values())))
            _copy(conn, NODE_LABEL, nodes)
            counts = {"nodes": nodes.num_rows}
            ranks = path_ranks(edges)
            for rel in REL_TYPES:
                rows = store_rel_table(edges, rel, run, ranks)
                if rows.num_rows:
                    _copy(conn, rel, rows)
                counts[rel] = rows.num_rows
            degrees = degree_table(edges, run)
            if degrees.num_rows:
                _copy(conn, DEGREE_LABEL, degrees)
            if graphs:
                counts |= _copy_graphs(conn, graphs, graph_nodes)
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
    finally:
        os.close(lock)
    return counts


def _create_graph_tables(conn) -> None:
    """The attribution-graph tables (rows.py), made in every store so the library's queries run on any run."""
    def props(p: dict) -> str:
        return ", ".join(f"{k} {t}" for k, t in p.items())

    conn.execute(f"CREATE NODE TABLE {GRAPH_LABEL}({props(GRAPH_PROPS)}, PRIMARY KEY(id))")
    conn.execute(f"CREATE NODE TABLE {PROMPT_LABEL}({props(PROMPT_PROPS)}, PRIMARY KEY(key))")
    conn.execute(f"CREATE REL TABLE {LINK_TYPE}(FROM {PROMPT_LABEL} TO {PROMPT_LABEL}, {props(LINK_PROPS)})")
    conn.execute(f"CREATE REL TABLE {OF_TYPE}(FROM {PROMPT_LABEL} TO {NODE_LABEL})")


def _copy_graphs(conn, graphs: Sequence[GraphFiles], graph_nodes: dict) -> dict[str, int]:
    """Copy each graph's row, prompt nodes, OF ties and links; the links straight from their Parquet file, the
    prompt-node keys made by the engine as it reads (the file is never held in memory)."""
    _copy(conn, GRAPH_LABEL, graph_table([{**g.info, "id": g.id} for g in graphs]))
    counts = {"graphs": len(graphs), "prompt_nodes": 0, "links": 0}
    for g in graphs:
        nodes = graph_nodes[g.id]
        _copy(conn, PROMPT_LABEL, prompt_node_table(nodes, g.id))
        of = of_table(nodes, g.id)
        if of.num_rows:
            _copy(conn, OF_TYPE, of)
        if int(g.info.get("links", 1)):
            conn.execute(f"COPY {LINK_TYPE} FROM (LOAD FROM {_literal(g.links_path)} "
                         "RETURN concat($graph, '/', source), concat($graph, '/', target), $graph, weight)", {"graph": g.id})
        counts["prompt_nodes"] += nodes.num_rows
        counts["links"] += int(g.info.get("links", 0))
    return counts


def _literal(path: Path) -> str:
    """A path as a Cypher string literal (backslash escapes)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _copy(conn, table: str, rows) -> None:
    # COPY scans a DataFrame / Arrow table from the caller's scope by name.
    frame = rows  # noqa: F841 - referenced by name in the COPY statement
    conn.execute(f"COPY {table} FROM frame")


class EmbeddedStore:
    """Read access to a run's embedded graph (load it first with `load`)."""

    def __init__(self, run_dir: Path, timeout: float | None = None):
        """`timeout`: seconds a query may run before it is stopped (None: no limit)."""
        self.path = Path(run_dir) / DB_NAME
        self.timeout = timeout
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
        if self.timeout is not None:
            self._conn.set_query_timeout(max(1, round(self.timeout * 1000)))
        return self

    def __exit__(self, *exc):
        self._conn.close()
        self._db.close()

    def query(self, cypher: str, params: dict | None = None) -> pd.DataFrame:
        """Run one read-only statement; columns not named with AS are named as written (as Neo4j names them)."""
        params = params or {}
        tokens = tokenize(cypher)
        check_read_only(tokens)
        for name in parameters(tokens):
            if name not in params:
                raise MissingParameter(name)
        try:
            res = self._conn.execute(cypher, params)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            if self.timeout is not None and "interrupt" in first.lower():
                raise FeatgraphError(f"the query ran past the {self.timeout:g} s limit and was stopped: narrow it (a LIMIT, "
                                     "a feature or head to start from)") from None
            # The engine's parser and binder reject the text itself (syntax, unknown names): the user's to fix, exit 2.
            bad = BadInput if first.startswith(("Parser exception", "Binder exception")) else FeatgraphError
            raise bad(f"embedded store rejected the query: {first}") from None
        df = res.get_as_df()
        return df.set_axis(column_names(cypher, tokens, list(df.columns)), axis=1)


class MissingParameter(MissingValue):
    """The query refers to $NAME and no value was given (the CLI names it `--param NAME`)."""

    def __init__(self, param: str):
        super().__init__(param, "")

    def message(self, name: str) -> str:
        return f"the query uses ${self.param} but no value was given: pass {name}=VALUE"


def check_read_only(tokens: list[Token]) -> None:
    """BadInput unless the statement only reads the graph (see _REFUSED and _CALLABLE)."""
    hint = "embedded queries only read the graph: no files, extensions, settings or writes (`featgraph load` rebuilds it)"
    for i, t in enumerate(tokens):
        word = t.word()
        if word in _REFUSED:
            raise BadInput(f"{t.text.upper()} is refused: {hint}; write a name spelled {t.text} in backticks")
        if word == "call":
            fn = tokens[i + 1] if i + 1 < len(tokens) else None
            opens = i + 2 < len(tokens) and tokens[i + 2].is_punct("(")
            if fn is None or fn.kind not in ("word", "name") or fn.text.lower() not in _CALLABLE or not opens:
                what = f"CALL {fn.text}" if fn is not None and fn.kind in ("word", "name") else "this CALL"
                raise BadInput(f"{what} is refused: {hint}; CALL takes only {', '.join(sorted(_CALLABLE))}")
        if t.is_punct(";") and i + 1 < len(tokens):
            raise BadInput(f"give one statement per query: found `;` at character {t.start + 1} before more text")


def column_names(cypher: str, tokens: list[Token], names: list[str]) -> list[str]:
    """The result's column names with every unaliased RETURN item named as written, as Neo4j does
    (LadybugDB names `count(*)` COUNT_STAR()); the engine's names where the items cannot be matched up."""
    items = return_items(cypher, tokens)
    if items is None or len(items) != len(names):
        return names
    if any(aliased and alias != name for (alias, aliased), name in zip(items, names)):
        return names  # the RETURN was not split as the engine split it: keep its names
    return [text for text, _ in items]

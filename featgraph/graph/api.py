"""What the CLI's `load`, `query`, `export` and `export-neo4j` commands call."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from featgraph.errors import BadInput
from featgraph.export import read_run
from featgraph.graph import embedded, queries


def load(run_path: Path, neo4j: bool = False, name: str | None = None, progress=None) -> dict:
    run = read_run(Path(run_path))
    if neo4j:
        from featgraph.graph.neo4j_store import Neo4jSettings, Neo4jStore

        with Neo4jStore(Neo4jSettings.from_env()) as store:
            return store.load(run, name, progress)
    return embedded.load(run, name)


def query(run_path: Path, cypher: str | None, file: Path | None, params: list[str],
          neo4j: bool = False, write: bool = False) -> pd.DataFrame:
    """Run a library query (by name or file) or literal Cypher; parameters are passed, never spliced."""
    given = parse_params(params)
    if file is not None or (cypher and not any(c.isspace() for c in cypher.strip())):
        q = queries.resolve(file if file is not None else cypher)
        if neo4j and "run" not in given and any(p.name == "run" for p in q.params):
            given["run"] = Path(run_path).name  # a shared Neo4j holds many runs: answer for this one
        text, bound = q.text, q.bind(given)
    elif cypher:
        text, bound = cypher, {k: _guess(v) for k, v in given.items()}
    else:
        raise BadInput("give a Cypher query, a library query name or --file FILE (see `featgraph query --list`)")
    if neo4j:
        from featgraph.graph.neo4j_store import Neo4jSettings, Neo4jStore

        with Neo4jStore(Neo4jSettings.from_env()) as store:
            return store.query(text, bound, write=write)
    if write:
        raise BadInput("--write applies to --neo4j; the embedded store is rebuilt by `featgraph load`")
    with embedded.EmbeddedStore(Path(run_path)) as store:
        return store.query(text, bound)


def parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise BadInput(f"--param takes NAME=VALUE, got {it!r}")
        out[k.strip()] = v
    return out


def _guess(v: str):
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def render(df: pd.DataFrame, fmt: str) -> str:
    if fmt == "table":
        from featgraph.analyse.tables import markdown

        return markdown(df)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2, force_ascii=False) + "\n"
    raise BadInput(f"--format must be table, csv or json, got {fmt!r}")


def describe_library() -> str:
    lines = []
    for q in queries.library().values():
        lines.append(f"{q.name}: {q.description}")
        for p in q.params:
            default = f" = {p.default}" if p.default is not None else " (required)"
            lines.append(f"    {p.name} {p.type}{default}: {p.doc}")
    return "\n".join(lines) + "\n"

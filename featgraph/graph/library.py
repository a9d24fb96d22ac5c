"""The `cypher/` query library: named, parameterised files that run unchanged on both stores.

The files ship inside the package as `featgraph.cypher` (built from the top-level
`cypher/` folder), so an installed featgraph finds them with importlib.resources;
FEATGRAPH_CYPHER points at another folder (for developing queries).

Header format (comment lines before the query):
    // What the query answers (first lines).
    // @param NAME TYPE[ = DEFAULT]: description        TYPE is int, float or str
    // @parts COLUMN: VALUE, VALUE...                   a UNION's parts, told apart by COLUMN, in this order

Cypher gives a UNION's rows no order (LadybugDB may return its second part first), so a query whose
parts have an order says so with @parts, and `Query.in_part_order` puts them back in it: a stable
sort on the part, each part keeping the order its own ORDER BY gave.

A query runs unchanged on both stores unless one engine's planner needs another text: then
`NAME.STORE.cypher` (STORE one of STORES) holds that store's text, with the same parameters, and
its header says why.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

from featgraph.errors import BadInput, BadValue, FeatgraphError, MissingValue

if TYPE_CHECKING:
    import pandas as pd

_PARAM = re.compile(r"^//\s*@param\s+(?P<name>\w+)\s+(?P<type>int|float|str)(?:\s*=\s*(?P<default>[^:]+?))?\s*:\s*(?P<doc>.*)$")
_PARTS = re.compile(r"^//\s*@parts\s+(?P<column>\w+)\s*:\s*(?P<values>.+)$")
_CASTS = {"int": int, "float": float, "str": str}
STORES = ("embedded", "neo4j")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    doc: str


@dataclass(frozen=True)
class Query:
    name: str
    path: str
    description: str
    params: tuple[Param, ...]
    text: str
    variants: dict[str, str] = field(default_factory=dict)  # store -> the text of NAME.STORE.cypher
    library: bool = True  # False for a file of the user's own: parameters its header does not declare pass as given
    parts: tuple[str, tuple[str, ...]] | None = None  # @parts: (column, its values in the parts' order)

    def text_for(self, store: str) -> str:
        """The text `store` runs: its variant if the library has one, else the shared text."""
        return self.variants.get(store, self.text)

    def bind(self, given: dict[str, str]) -> dict:
        """Typed parameters (strings are cast by the header's types) plus defaults; unknown or missing ones are errors."""
        known = {p.name: p for p in self.params}
        extra = sorted(set(given) - set(known))
        if extra and self.library:
            raise BadInput(f"query {self.name} has no parameter {extra[0]!r}; it takes {', '.join(known) or 'none'}")
        out = {}
        for p in self.params:
            raw = given.get(p.name, p.default)
            if raw is None:
                raise MissingValue(p.name, f"by query {self.name}: {p.type}, {p.doc}")
            out[p.name] = cast(raw, p.type, p.name)
        return out | {k: given[k] for k in extra}

    def in_part_order(self, rows: pd.DataFrame) -> pd.DataFrame:
        """`rows` (this query's answer from a store) with its UNION's parts in the order @parts gives, each part's
        rows in the order the store returned them; unchanged without @parts."""
        if self.parts is None or self.parts[0] not in rows.columns or len(rows) < 2:
            return rows
        import numpy as np

        column, values = self.parts
        part = rows[column].map({v: i for i, v in enumerate(values)}).fillna(len(values))
        return rows.iloc[np.argsort(part.to_numpy(), kind="stable")].reset_index(drop=True)


def cast(raw, typ: str, name: str):
    try:
        return _CASTS[typ](raw)
    except (TypeError, ValueError):
        raise BadValue(name, raw, f"must be a valid {typ}") from None


def library_dir() -> Traversable:
    env = os.environ.get("FEATGRAPH_CYPHER")
    if env:
        return Path(env)
    # Run from a source checkout (featgraph/ beside pyproject.toml, e.g. PYTHONPATH=checkout): its own cypher/,
    # not the one an editable install of another checkout maps to featgraph.cypher.
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "cypher").is_dir():
        return root / "cypher"
    return resources.files("featgraph.cypher")


def parse(path: Path | Traversable) -> Query:
    text = path.read_text(encoding="utf-8")
    desc, params, parts = [], [], None
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        m = _PARAM.match(line)
        p = _PARTS.match(line)
        if m:
            params.append(Param(m["name"], m["type"], m["default"], m["doc"].strip()))
        elif p:
            parts = (p["column"], tuple(v.strip() for v in p["values"].split(",")))
        else:
            desc.append(line[2:].strip())
    name = path.name.removesuffix(".cypher")
    return Query(name, str(path), " ".join(desc), tuple(params), text, parts=parts)


def query_library() -> dict[str, Query]:
    """The library's queries by name, each with its description and typed parameters."""
    return library()


def library() -> dict[str, Query]:
    files = sorted((p for p in library_dir().iterdir() if p.name.endswith(".cypher")), key=lambda p: p.name)
    queries = {q.name: q for q in map(parse, files) if _store_of(q.name) is None}
    for p in files:
        name = p.name.removesuffix(".cypher")
        store = _store_of(name)
        if store is None:
            continue
        base, variant = queries.get(name.rsplit(".", 1)[0]), parse(p)
        if base is None or variant.params != base.params or variant.parts != base.parts:
            raise FeatgraphError(f"query variant {p.name} needs {name.rsplit('.', 1)[0]}.cypher beside it, with the same "
                                 "@param and @parts lines")
        base.variants[store] = variant.text
    return queries


def _store_of(name: str) -> str | None:
    """`neo4j` for `tetrads.neo4j` (a store's variant), else None."""
    suffix = name.rsplit(".", 1)[-1] if "." in name else None
    return suffix if suffix in STORES else None


def resolve(name_or_file: str | Path) -> Query:
    """A library query by name (`top_edges`) or a .cypher file path."""
    p = Path(name_or_file)
    if p.is_file():
        return dataclasses.replace(parse(p), library=False)
    lib = library()
    if str(name_or_file) in lib:
        return lib[str(name_or_file)]
    raise BadInput(f"no query file '{name_or_file}': pass a .cypher path or one of {', '.join(lib)} (see `featgraph query --list`)")


def internal(name: str) -> str:
    """A store's own statement from cypher/store/."""
    return (library_dir() / "store" / f"{name}.cypher").read_text(encoding="utf-8")


def statements(text: str) -> list[str]:
    """Split a multi-statement file on `;` line ends, dropping comments."""
    body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    return [s.strip() for s in body.split(";") if s.strip()]


def describe_library() -> str:
    """The library as text: each query's name, description and parameters."""
    lines = []
    for q in library().values():
        lines.append(f"{q.name}: {q.description}")
        for p in q.params:
            default = f" = {p.default}" if p.default is not None else " (required)"
            lines.append(f"    {p.name} {p.type}{default}: {p.doc}")
    return "\n".join(lines) + "\n"

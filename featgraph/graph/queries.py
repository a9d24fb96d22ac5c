"""The `cypher/` query library: named, parameterised files that run unchanged on both stores.

Header format (comment lines before the query):
    // What the query answers (first lines).
    // @param NAME TYPE[ = DEFAULT]: description        TYPE is int, float or str
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from featgraph.errors import BadInput

_PARAM = re.compile(r"^//\s*@param\s+(?P<name>\w+)\s+(?P<type>int|float|str)(?:\s*=\s*(?P<default>[^:]+?))?\s*:\s*(?P<doc>.*)$")
_CASTS = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    doc: str


@dataclass(frozen=True)
class Query:
    name: str
    path: Path
    description: str
    params: tuple[Param, ...]
    text: str

    def bind(self, given: dict[str, str]) -> dict:
        """Typed parameters from `--param k=v` strings plus defaults; unknown or missing ones are errors."""
        known = {p.name: p for p in self.params}
        extra = sorted(set(given) - set(known))
        if extra:
            raise BadInput(f"query {self.name} has no parameter {extra[0]!r}; it takes {', '.join(known) or 'none'}")
        out = {}
        for p in self.params:
            raw = given.get(p.name, p.default)
            if raw is None:
                raise BadInput(f"query {self.name} needs --param {p.name}=… ({p.type}: {p.doc})")
            out[p.name] = cast(raw, p.type, p.name)
        return out


def cast(raw, typ: str, name: str):
    try:
        return _CASTS[typ](raw)
    except (TypeError, ValueError):
        raise BadInput(f"--param {name}={raw!r} is not a valid {typ}") from None


def library_dir() -> Path:
    env = os.environ.get("FEATGRAPH_CYPHER")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "cypher"


def parse(path: Path) -> Query:
    text = Path(path).read_text()
    desc, params = [], []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        m = _PARAM.match(line)
        if m:
            params.append(Param(m["name"], m["type"], m["default"], m["doc"].strip()))
        else:
            desc.append(line[2:].strip())
    return Query(Path(path).stem, Path(path), " ".join(desc), tuple(params), text)


def library() -> dict[str, Query]:
    d = library_dir()
    return {p.stem: parse(p) for p in sorted(d.glob("*.cypher"))}


def resolve(name_or_file: str | Path) -> Query:
    """A library query by name (`top_edges`) or a .cypher file path."""
    p = Path(name_or_file)
    if p.is_file():
        return parse(p)
    lib = library()
    if str(name_or_file) in lib:
        return lib[str(name_or_file)]
    raise BadInput(f"no query file {name_or_file!r}: pass a .cypher path or one of {', '.join(lib)} (see `featgraph query --list`)")


def internal(name: str) -> str:
    """A store's own statement from cypher/store/."""
    return (library_dir() / "store" / f"{name}.cypher").read_text()


def statements(text: str) -> list[str]:
    """Split a multi-statement file on `;` line ends, dropping comments."""
    body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    return [s.strip() for s in body.split(";") if s.strip()]

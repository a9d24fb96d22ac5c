"""The embedded store's read-only guard, fuzzed against LadybugDB's own parser.

The guard (featgraph.graph.embedded.check_read_only over featgraph.graph.tokens) must see every word the engine
sees as code. Three checks, each with statements drawn from hostile fragments (stars, slashes, quotes,
backslashes, backticks, carriage returns):

- gaps the grammar calls whitespace (comments built rule by rule from Cypher.g4's CypherComment; the engine is
  asked first that each one is whitespace to it) put around a COPY … TO, LOAD FROM or CHECKPOINT: the guard
  refuses every one;
- random statements the guard passes run on a read-only store: no file appears, a secret file's marker is never
  returned, and the store's bytes are unchanged and it still opens;
- for a passed statement the engine runs, the guard's tokens joined again (its comments and whitespace dropped)
  give the same answer: a comment or string the guard ends elsewhere than the engine changes the statement.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from featgraph.errors import BadInput
from featgraph.graph.embedded import check_read_only
from featgraph.graph.tokens import tokenize

HOSTILE = ["'", '"', "`", " ", "x", "\\", "\n", ";", "COPY"]


@pytest.fixture()
def engine(tmp_path):
    """A read-only connection to a one-table LadybugDB, a sink path, a secret file, the store's digest."""
    lb = pytest.importorskip("ladybug")
    db = lb.Database(str(tmp_path / "g.lbdb"))
    conn = lb.Connection(db)
    conn.execute("CREATE NODE TABLE F(id INT64, PRIMARY KEY(id))")
    conn.execute("CREATE (:F {id: 1})")
    conn.close()
    db.close()
    before = _digest(tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("MARKER-7f3a\n")
    db = lb.Database(str(tmp_path / "g.lbdb"), read_only=True)
    conn = lb.Connection(db)
    yield conn, tmp_path / "sink.csv", secret
    conn.close()
    db.close()
    assert _digest(tmp_path) == before, "the store changed"
    db = lb.Database(str(tmp_path / "g.lbdb"), read_only=True)  # and still opens
    assert lb.Connection(db).execute("MATCH (f:F) RETURN count(*)").get_as_df().iloc[0, 0] == 1
    db.close()


def _digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())
            if p.is_file() and p.suffix != ".csv"}


def _passes(q: str) -> bool:
    try:
        check_read_only(tokenize(q))
    except BadInput:
        return False
    return True


def _run(conn, q: str):
    """The engine's answer (every statement's rows), or None when it refuses the text."""
    try:
        res = conn.execute(q)
    except RuntimeError:
        return None
    return [r.get_as_df().values.tolist() for r in (res if isinstance(res, list) else [res])]


def _gap(rng: random.Random) -> str:
    """Whitespace to the grammar: `/*` (~[*] | '*' ~[/])* `*/`, `//` ~[\\n\\r]* CR? LF, spaces."""
    out = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.5:
            body = ["*" + rng.choice([*HOSTILE, "*"]) if rng.random() < 0.4 else rng.choice([*HOSTILE, "/"])
                    for _ in range(rng.randint(0, 8))]
            out.append("/*" + "".join(body) + "*/")
        elif r < 0.8:
            body = [rng.choice([h for h in HOSTILE if h != "\n"] + ["*", "/"]) for _ in range(rng.randint(0, 5))]
            out.append("//" + "".join(body) + rng.choice(["\n", "\r\n"]))
        else:
            out.append(rng.choice([" ", "\n", "\t"]))
    return "".join(out)


def test_statements_hidden_by_comments_are_refused(engine):
    conn, sink, secret = engine
    rng = random.Random(20261203)
    for _ in range(100):  # the generator makes what the engine calls whitespace
        gap = _gap(rng)
        assert _run(conn, "RETURN 1 AS a" + gap) == [[[1]]], repr(gap)
    payloads = [f'COPY (RETURN 1) TO "{sink}"', f"COPY (MATCH (f:F) RETURN f.id) TO '{sink}'",
                f'LOAD FROM "{secret}" RETURN *', "CHECKPOINT"]
    for _ in range(1500):
        q = rng.choice(["", "RETURN 1 AS a;"]) + _gap(rng) + rng.choice(payloads) + _gap(rng)
        assert not _passes(q), repr(q)
    # the report, in the shapes it gave
    for q in (f"/* **/ ' */ COPY (MATCH (f:F) RETURN f.id) TO \"{sink}\" // '",
              f"/* **/ ' */ LOAD FROM \"{secret}\" RETURN * // '",
              "/* **/ ' */ CHECKPOINT // '"):
        assert not _passes(q), q
    assert not sink.exists()


ALPHABET = ["/*", "*/", "**/", "***/", "*", "/", "//", "'", "\\'", '"', '\\"', "\\\\", "\\", "`", "``", "\n", "\r",
            "\r\n", " ", "x", "1", "+", ";", "COPY", "\\u0027", "\\x27", "\\q"]


def _junk(rng, k):
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, k)))


def _comment(rng):
    if rng.random() < 0.5:
        return "/*" + _junk(rng, 6) + "*/"
    return "//" + _junk(rng, 4).replace("\n", "") + rng.choice(["\n", "\r\n", "\r", ""])


def _term(rng):
    r = rng.random()
    if r < 0.4:
        return str(rng.randint(0, 9))
    if r < 0.8:
        q = rng.choice("'\"")
        return f"size({q}{_junk(rng, 5)}{q})"
    return "1" + _comment(rng)


def _statement(rng, sink, secret):
    if rng.random() < 0.5:
        parts = [_term(rng)]
        for _ in range(rng.randint(0, 3)):
            parts.append(rng.choice([" ", "", _comment(rng)]) + "+" + rng.choice([" ", "", _comment(rng)]) + _term(rng))
        return "RETURN " + "".join(parts) + " AS a" + rng.choice(["", " ", _comment(rng)])
    payload = rng.choice([f"COPY (RETURN 1) TO '{sink}'", f'COPY (RETURN 1) TO "{sink}"', f"LOAD FROM '{secret}' RETURN *",
                          "CHECKPOINT", f"EXPORT DATABASE '{sink}'"])
    small = ["/*", "*/", "**/", "*", "'", '"', "//", "\n", " ", "\\'", "`", "\r"]
    junk = lambda k: "".join(rng.choice(small) for _ in range(rng.randint(0, k)))  # noqa: E731
    return rng.choice(["", "RETURN 1 AS a;"]) + junk(5) + " " + payload + " " + junk(4)


def _rejoined(text, tokens):
    """The statement as the guard read it: its tokens, one space where it saw whitespace or a comment."""
    out, prev = [], None
    for t in tokens:
        if prev is not None and t.start > prev.end:
            out.append(" ")
        out.append(text[t.start : t.end])
        prev = t
    return "".join(out)


def test_what_the_guard_passes_is_harmless_and_read_as_the_engine_reads_it(engine):
    conn, sink, secret = engine
    rng = random.Random(7)
    passed = ran = 0
    for _ in range(2500):
        q = _statement(rng, sink, secret)
        try:
            tokens = tokenize(q)
            check_read_only(tokens)
        except BadInput:
            continue
        passed += 1
        got = _run(conn, q)
        assert not sink.exists(), repr(q)
        assert "MARKER-7f3a" not in repr(got), repr(q)
        if got is not None:
            ran += 1
            assert _run(conn, _rejoined(q, tokens)) == got, repr(q)
    assert passed > 500 and ran > 300  # the generator reaches the engine often enough to mean something

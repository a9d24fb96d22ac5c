"""The embedded store runs read-only queries only: statements that touch files, extensions, settings or
the database are refused before they run, whatever their spelling; parameters a query uses must be given;
unaliased columns are named as written (as on Neo4j)."""

from __future__ import annotations

import hashlib
import shutil

import pytest

import featgraph as fg_api
from featgraph.errors import BadInput
from featgraph.graph.tokens import parameters, return_items, tokenize

from helpers import fg


@pytest.fixture(scope="module")
def loaded(demo_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("emb") / "run"
    shutil.copytree(demo_run, d)
    fg_api.open_run(d).load()
    return d


def _snapshot(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# Each writes or reads a file, reaches the network, loads code, changes a setting, or wrecks the store:
# with LadybugDB 0.22 read-only, COPY/EXPORT/LOAD FROM/CALL home_directory ran, CHECKPOINT left the store
# unopenable, CALL read_csv_serial crashed the process, the rest reached the engine.
ATTACKS = [
    ("COPY (MATCH (f:Feature) RETURN f.id LIMIT 1) TO '{run}/edges.parquet'", "COPY"),
    ("copy (MATCH (f:Feature) RETURN f.id) TO '{out}/ids.csv'", "COPY"),
    ("/* a comment */CoPy/**/(MATCH (f:Feature) RETURN f.id) TO '{out}/ids.csv'", "COPY"),
    ("EXPLAIN COPY (RETURN 1) TO '{out}/one.csv'", "COPY"),
    ("EXPORT DATABASE '{out}/export'", "EXPORT"),
    ("IMPORT DATABASE '{out}'", "IMPORT"),
    ("LOAD FROM '{secret}' (file_format='csv', header=false) RETURN *", "LOAD"),
    ("LOAD WITH HEADERS (a STRING) FROM '{secret}' (file_format='csv') RETURN *", "LOAD"),
    ("MATCH (f:Feature) WITH f LIMIT 1 LOAD FROM '{secret}' (file_format='csv') RETURN *", "LOAD"),
    ("INSTALL httpfs", "INSTALL"),
    ("FORCE INSTALL json FROM 'http://127.0.0.1:9/'", "INSTALL"),
    ("UPDATE httpfs", "UPDATE"),
    ("UNINSTALL httpfs", "UNINSTALL"),
    ("LOAD EXTENSION '{out}/evil.lbug_extension'", "LOAD"),
    ("ATTACH '{run}/graph.lbdb' AS other (dbtype lbug)", "ATTACH"),
    ("CREATE MACRO twice(x) AS x * 2", "CREATE"),
    ("CHECKPOINT // then read", "CHECKPOINT"),
    ("BEGIN TRANSACTION", "BEGIN"),
    ("ANALYZE Feature", "ANALYZE"),
    ("MATCH (f:Feature) SET f.description = 'x' RETURN f.id", "SET"),
    ("CALL home_directory='{out}'", "CALL home_directory"),
    ("CALL read_csv_serial('{secret}') RETURN *", "CALL read_csv_serial"),
    ("CALL `READ_PARQUET`('{run}/edges.parquet') RETURN *", "CALL READ_PARQUET"),
    ("MATCH (f:Feature) CALL file_info() RETURN *", "CALL file_info"),
    ("RETURN 1 AS one; RETURN 2 AS two", "one statement per query"),
    # a `*` inside /* */ takes the next character with it, so `**/` ends no comment: the engine reads COPY here
    ("/* **/ ' */ COPY (MATCH (f:Feature) RETURN f.id) TO \"{out}/ids.csv\" // '", "COPY"),
    ("/* **/ ' */ LOAD FROM \"{secret}\" (file_format='csv') RETURN * // '", "LOAD"),
    ("/* **/ ' */ CHECKPOINT // '", "CHECKPOINT"),
]


@pytest.mark.parametrize(("cypher", "named"), ATTACKS, ids=[a[0][:40] for a in ATTACKS])
def test_refused_before_it_runs(loaded, tmp_path, cypher, named):
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\ntop-secret,1\n")
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(loaded)
    r = fg("query", loaded, cypher.format(run=loaded, out=out, secret=secret))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and named in r.stderr, r.stderr
    assert "top-secret" not in r.output
    assert _snapshot(loaded) == before and list(out.iterdir()) == []
    # the store still opens and answers
    assert fg_api.open_run(loaded).query("MATCH (f:Feature) RETURN count(f) AS n")["n"][0] == len(fg_api.open_run(loaded).features)


def test_refused_from_a_file_too(loaded, tmp_path):
    q = tmp_path / "evil.cypher"
    q.write_text(f"// Looks like a library query.\n// @param limit int = 3: rows\nEXPORT DATABASE '{tmp_path}/export'\n")
    r = fg("query", loaded, "--file", q)
    assert r.exit_code == 2 and "EXPORT" in r.stderr and not (tmp_path / "export").exists()
    q.write_text(f"// Looks like a library query.\n/* **/ ' */ COPY (MATCH (f:Feature) RETURN f.id) TO '{tmp_path}/x.csv' // '\n")
    r = fg("query", loaded, "--file", q)
    assert r.exit_code == 2 and "COPY" in r.stderr and not (tmp_path / "x.csv").exists()
    with pytest.raises(BadInput, match="COPY"):
        fg_api.open_run(loaded).query(f"/* **/ ' */ COPY (MATCH (f:Feature) RETURN f.id) TO '{tmp_path}/y.csv' // '")
    assert not (tmp_path / "y.csv").exists()


def test_keywords_in_strings_comments_and_names_are_fine(loaded):
    run = fg_api.open_run(loaded)
    f = run.features.sort_values("id")
    got = run.query("""MATCH (f:Feature)  // COPY (…) TO 'x'; EXPORT DATABASE
        WHERE f.description <> 'COPY (RETURN 1) TO \\'/tmp/x\\'; LOAD FROM "y"' /* CALL read_csv('z') */
          AND f.id <> "install \\"httpfs\\" $nothing"
        RETURN f.id AS `copy`, f.layer AS `load` ORDER BY `copy` LIMIT $n""", n=7)
    want = f[f["description"].notna() & (f["description"] != "COPY (RETURN 1) TO '/tmp/x'; LOAD FROM \"y\"")].head(7)
    assert list(got.columns) == ["copy", "load"]
    assert got["copy"].tolist() == want["id"].tolist() and got["load"].tolist() == want["layer"].tolist()
    tables = run.query("CALL show_tables() RETURN name ORDER BY name")
    assert tables["name"].tolist() == ["ATTRIBUTION", "AttributionGraph", "Degree", "Feature", "OF", "OV", "PromptNode", "QK"]


def test_a_parameter_used_but_not_given_is_an_error(loaded, tmp_path):
    r = fg("query", loaded, "MATCH (f:Feature) WHERE f.layer = $h RETURN f.id AS id")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "$h" in r.stderr and "--param h=VALUE" in r.stderr
    with pytest.raises(BadInput, match=r"\$h .*h=VALUE"):
        fg_api.open_run(loaded).query("MATCH (f:Feature) WHERE f.layer = $h RETURN f.id AS id")
    # a .cypher file whose header does not declare every parameter it uses
    q = tmp_path / "q.cypher"
    q.write_text("// Features of a layer.\n// @param limit int = 3: rows\n"
                 "MATCH (f:Feature) WHERE f.layer = $layer RETURN f.id AS id LIMIT $limit\n")
    r = fg("query", loaded, "--file", q)
    assert r.exit_code == 2 and "--param layer=VALUE" in r.stderr
    # and, as the error says, given it runs: the header types limit, layer is typed by its look
    feats = fg_api.open_run(loaded).features
    r = fg("query", loaded, "--file", q, "--param", "layer=1", "--param", "limit=1000", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert sorted(r.stdout.split()[1:]) == sorted(feats.loc[feats["layer"] == 1, "id"])
    # a file of your own with no header at all takes its parameters the same way, from the CLI and from Python
    bare = tmp_path / "bare.cypher"
    bare.write_text("MATCH (f:Feature) WHERE f.layer = $l RETURN count(*) AS n\n")
    r = fg("query", loaded, "--file", bare, "--param", "l=0", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == ["n", str(int((feats["layer"] == 0).sum()))]
    assert fg_api.open_run(loaded).query(bare, l=0)["n"][0] == (feats["layer"] == 0).sum() > 0
    # a library query still refuses a parameter it does not take
    r = fg("query", loaded, "top_edges", "--param", "head=0", "--param", "l=0")
    assert r.exit_code == 2 and "top_edges has no parameter 'l'" in r.stderr
    # given, it runs; inside strings and comments a $name is no parameter
    r = fg("query", loaded, "MATCH (f:Feature) WHERE f.layer = $h AND f.id <> '$x' RETURN count(*) AS n // $y",
           "--param", "h=1", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == ["n", str(int((fg_api.open_run(loaded).features["layer"] == 1).sum()))]


def test_unaliased_columns_are_named_as_written(loaded):
    run = fg_api.open_run(loaded)
    got = run.query("MATCH (f:Feature) RETURN f.layer, count(*), min(f.feature_index), count( * ) AS n ORDER BY f.layer")
    assert list(got.columns) == ["f.layer", "count(*)", "min(f.feature_index)", "n"]
    want = run.features.groupby("layer")["feature_index"].agg(["size", "min"]).reset_index()
    assert got["f.layer"].tolist() == want["layer"].tolist()
    assert got["count(*)"].tolist() == got["n"].tolist() == want["size"].tolist()
    assert got["min(f.feature_index)"].tolist() == want["min"].tolist()
    assert list(run.query("RETURN DISTINCT 1 + 2, 'a, b' UNION RETURN 3, 'c'").columns) == ["1 + 2", "'a, b'"]


def test_tokenizer():
    toks = tokenize("MATCH (`a``b`) WHERE x.p = 'it\\'s $no' AND y = $yes // $c\n/* $d */ RETURN $`q r`, $0, a$b, 1.5e-3")
    assert [(t.kind, t.text) for t in toks if t.kind in ("name", "string", "param", "number")] == [
        ("name", "a`b"), ("string", "'it\\'s $no'"), ("param", "yes"), ("param", "q r"), ("param", "0"), ("number", "1.5e-3")]
    assert [t.text for t in toks if t.kind == "word"][-1] == "a$b"  # `$` continues a name, as in the grammar
    assert parameters(toks) == ["yes", "q r", "0"]
    for bad in ("RETURN 'abc", 'RETURN "a\\"', "RETURN 1 /* open", "RETURN `open", "RETURN 1 /* **/"):
        with pytest.raises(BadInput, match="unterminated"):
            tokenize(bad)
    # comments end where LadybugDB's grammar ends them: stars pair up inside /* */
    assert [t.text for t in tokenize("RETURN 1 /* **/ + 2 */ AS a")] == ["RETURN", "1", "AS", "a"]
    assert [t.text for t in tokenize("RETURN 1 /* ***/ + 2 AS a")] == ["RETURN", "1", "+", "2", "AS", "a"]
    assert [t.text for t in tokenize("RETURN 1 /**/ + 2 // x\r\n AS a")] == ["RETURN", "1", "+", "2", "AS", "a"]
    assert [t.text for t in tokenize("RETURN '\\x41\\u00e9\\\\\\'' AS a")][1] == "'\\x41\\u00e9\\\\\\''"
    # what the engine cannot read is refused rather than guessed at: a lone CR in a // comment, an unknown escape
    with pytest.raises(BadInput, match="carriage return"):
        tokenize("RETURN 1 // x\rCOPY")
    for bad in ("RETURN 'a\\q'", "RETURN '\\x4'", "RETURN \"\\u12\" AS a"):
        with pytest.raises(BadInput, match="escape"):
            tokenize(bad)
    text = "WITH 1 AS x RETURN x, [1, 2] AS l, f(x, 2) ORDER BY x"
    assert return_items(text, tokenize(text)) == [("x", False), ("l", True), ("f(x, 2)", False)]
    assert return_items("MATCH (n) RETURN *", tokenize("MATCH (n) RETURN *")) is None


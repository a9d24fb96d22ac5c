"""What the command line says: its version, one-line usage errors, exit 2 for bad Cypher, messages that name
the flag given, help examples that copy whole, and a word of why when a query cannot answer on one layer."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from featgraph import __version__
from featgraph.cli.app import app

from helpers import fg


def _one_line(r, code: int = 2) -> str:
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_version():
    r = fg("--version")
    assert r.exit_code == 0 and r.stdout == f"featgraph {__version__}\n"


@pytest.mark.parametrize(("args", "says"), [
    (["nosuch"], "No such command 'nosuch' (see `featgraph --help`)"),
    (["--bogus"], "No such option: --bogus"),
    (["tables", "x", "--bogus"], "No such option: --bogus (see `featgraph tables --help`)"),
    (["tables"], "Missing argument 'RUN' (see `featgraph tables --help`)"),
    (["tables", "x", "--head", "q", "--circuit", "qk"], "Invalid value for '--head'"),
    (["tables", "x", "--head"], "Option '--head' requires an argument"),
])
def test_usage_errors_are_one_line(args, says):
    assert says in _one_line(fg(*args))


def test_a_cypher_syntax_error_is_bad_input(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    for text in ("MATCH (n RETURN n", "MATCH (n:Feature) RETURN m"):  # the parser's and the binder's
        line = _one_line(fg("query", run, text))
        assert "embedded store rejected the query" in line, line


def test_messages_name_what_was_given(demo_run, tmp_path):
    line = _one_line(fg("export", demo_run, "--graphml", tmp_path / "out.txt"))
    assert line.startswith("error: --graphml must be a .graphml or .xml file"), line
    line = _one_line(fg("query", demo_run, "--file", "nope.cypher"))
    assert "'nope.cypher'" in line and "PosixPath" not in line, line
    e = pd.read_parquet(demo_run / "edges.parquet").head(3)
    e["weight"] = np.array([1.0, np.nan, 2.0], dtype=np.float32)
    e.to_parquet(tmp_path / "nan.parquet")
    line = _one_line(fg("import", tmp_path / "nan.parquet", "--out", tmp_path / "imp"))
    assert "data row 2, column weight: nan is not a finite number" in line and "np." not in line, line


def test_help_examples_are_printed_whole():
    """Each example of every command's help stays on one line (click rewrapped `--max-\\ntokens`), at any width."""
    for info in app.registered_commands:
        name = info.name or info.callback.__name__
        examples = re.findall(r"featgraph [^\n]+", info.epilog or "")
        assert examples, name
        for width in ("60", "200"):
            r = fg(name, "--help") if width == "200" else _narrow(name)
            assert r.exit_code == 0
            lines = {line.strip().removeprefix("Example: ").split(": ", 1)[-1] for line in r.stdout.splitlines()}
            for ex in examples:
                assert ex.strip() in lines, (name, width, ex, r.stdout[-600:])


def _narrow(name):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "60"}, terminal_width=60)


def test_queries_across_layers_say_why_they_are_empty_on_one_layer(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    for name in ("cross_layer_paths", "recurring_hubs"):
        r = fg("query", run, name)
        assert r.exit_code == 0 and r.stdout.startswith("| "), r.output
        assert f"warning: {name} found nothing" in r.stderr and "one layer (1)" in r.stderr, r.stderr
    r = fg("query", run, "recurring_hubs", "--param", "min_layers=1")  # answers on one layer: no warning
    assert r.exit_code == 0 and "warning" not in r.stderr and r.stdout.count("\n") > 2, r.output


def test_missing_descriptions_are_na_in_every_result(demo_run, tmp_path):
    import featgraph as fg_api

    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    r = fg_api.open_run(run)
    q = r.query("MATCH (f:Feature) WHERE f.description IS NULL RETURN f.id AS id, f.description AS description")
    assert len(q) and str(q["description"].dtype) == "string" and q["description"].isna().all()
    assert q["description"].iloc[0] is pd.NA and r.edges["src_description"].dtype == q["description"].dtype
    top = r.query("top_edges", head=0, circuit="qk", limit=3)
    assert str(top["src_description"].dtype) == "string"


def test_default_saes_only_for_the_model_they_were_trained_on(tiny, tmp_path, monkeypatch):
    """A 48-wide Gemma 2 got Gemma 2 2B's default SAEs (a Hub download that failed); now one line, before any download."""
    from types import SimpleNamespace

    from featgraph.api.reload import check_default_sae_fits
    from featgraph.errors import BadInput

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = tiny[0]
    for args in (["extract", "--model", model_dir, "--layer", 1, "--no-labels", "--out", tmp_path / "run"],
                 ["extract", "--model", model_dir, "--layer", 1, "--sae-in", tiny[2], "--no-labels", "--out", tmp_path / "run"],
                 ["positional", "--model", model_dir, "--layer", 1, "--out", tmp_path / "p.png"]):
        line = _one_line(fg(*args))
        assert "no default SAE for" in line and "d_model 48" in line and "--sae-in" in line, line
        assert not (tmp_path / "run").exists() and not (tmp_path / "p.png").exists()
    g2b = SimpleNamespace(model_type="gemma2", d_model=2304, n_layers=26)
    check_default_sae_fits(g2b, "google/gemma-2-2b")  # the model they were trained on
    check_default_sae_fits(g2b, None)  # an object in memory of that shape
    with pytest.raises(BadInput, match="no default SAE for gemma-2-2b-it|no default SAE for gemma-2-9b"):
        check_default_sae_fits(SimpleNamespace(model_type="gemma2", d_model=3584, n_layers=42), "google/gemma-2-9b")

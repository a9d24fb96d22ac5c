"""GraphML read whole by a JVM GraphML reader (JGraphT's GraphMLImporter from Maven Central, every typed value
parsed with Java's number parsers as Gephi does): an imported run's missing z is left out, never written `nan`."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import networkx as nx
import pandas as pd
import pytest

from helpers import REPO, fg

pytestmark = [pytest.mark.jvm, pytest.mark.skipif(
    not all(shutil.which(t) for t in ("java", "javac", "mvn")), reason="needs java, javac and mvn (scripts/graphml-check)")]


def _jvm_read(path) -> dict[str, str]:
    r = subprocess.run([str(REPO / "scripts" / "graphml-check"), str(path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = {}
    for line in r.stdout.splitlines():  # "vertices N", "edges M", "attr edge z COUNT SUM": name -> count
        words = line.split()
        out[" ".join(words[:3] if words[0] == "attr" else words[:1])] = words[3] if words[0] == "attr" else words[1]
    return out


def test_an_imported_run_without_z_reads_whole_in_a_jvm(demo_run, tmp_path):
    e = pd.read_parquet(demo_run / "edges.parquet").drop(columns=["z"])
    e.loc[e.index[:7], "kv_head"] = None  # made elsewhere: some optional numbers unknown too
    e.to_csv(tmp_path / "edges.csv", index=False)
    assert fg("import", tmp_path / "edges.csv", "--out", tmp_path / "imp").exit_code == 0
    out = tmp_path / "imp.graphml"
    r = fg("export", tmp_path / "imp", "--graphml", out)
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert ">nan<" not in text.lower() and ">inf<" not in text.lower()
    got = _jvm_read(out)
    assert got["vertices"] == str(len(pd.read_parquet(tmp_path / "imp" / "features.parquet")))
    assert got["edges"] == str(len(e))
    assert got["attr edge weight"] == str(len(e)) and "attr edge z" not in got  # every weight parsed; no z anywhere
    g = nx.read_graphml(out)  # and the Python readers agree
    assert g.number_of_edges() == len(e) and not any("z" in d for *_, d in g.edges(data=True))


def test_an_extracted_run_reads_whole_with_every_number(demo_run, tmp_path):
    out = tmp_path / "demo.graphml"
    assert fg("export", demo_run, "--graphml", out).exit_code == 0
    got = _jvm_read(out)
    n = len(pd.read_parquet(demo_run / "edges.parquet"))
    assert got["edges"] == str(n) and got["attr edge z"] == str(n) and got["attr edge rank"] == str(n)
    keys = {k.get("attr.name"): k.get("attr.type") for k in ET.parse(out).getroot()
            if k.tag.endswith("key") and k.get("for") == "edge"}
    assert keys["z"] == "double" and keys["weight"] == "double"

"""A non-editable install works: the wheel carries the query library, and an installed featgraph runs
`query --list` and `demo` from a directory outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from helpers import REPO

SOURCES = ("pyproject.toml", "README.md", "featgraph", "cypher")  # what the build reads (pyproject's [tool.setuptools])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources: pip builds a local folder in place, and setuptools' build/ and
    featgraph.egg-info/ in the checkout would be shared by two test runs at once (one's cleanup under the other's
    build)."""
    src, out = tmp_path_factory.mktemp("wheel-src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    before = _build_leftovers()
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _build_leftovers() == before, "the build wrote into the checkout"
    (whl,) = out.glob("featgraph-*.whl")
    return whl


def _build_leftovers() -> dict[str, int]:
    """Every path (and its mtime) under what an in-place setuptools build writes in the checkout."""
    return {str(p): p.stat().st_mtime_ns for d in ("build", "featgraph.egg-info") for p in [REPO / d, *(REPO / d).rglob("*")]
            if p.exists()}


def test_wheel_holds_the_query_library(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("featgraph/cypher/") and n.endswith(".cypher")}
    in_repo = {p.name for p in (REPO / "cypher").rglob("*.cypher")}
    assert in_repo and shipped == in_repo
    assert not any(n.startswith(("tests/", "cypher/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_outside_the_repo(wheel, tmp_path):
    """A fresh venv with the wheel installed (not editable). Its dependencies are taken from this
    environment's site-packages through a .pth line, which — unlike a site directory — does not run the
    editable install's hook, so only the wheel's featgraph is importable there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FEATGRAPH_CYPHER")}
    where = subprocess.run([py, "-c", "import featgraph; print(featgraph.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where
    exe = venv / "bin" / "featgraph"
    r = subprocess.run([exe, "query", "--list"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "top_edges:" in r.stdout and "tetrads:" in r.stdout
    r = subprocess.run([exe, "demo", "--out", "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (work / "demo" / "report" / "index.html").is_file() and (work / "demo" / "run" / "graph.lbdb").exists()

"""Outputs that appear whole or not at all, never over something featgraph did not make.

Every file is written under a temporary name beside its target and renamed into
place; every output directory is built beside its target and swapped in. Each
output directory holds a marker file naming what it is (`run`, `report`, …), so
`--force` replaces only a directory featgraph made *of the same kind*, never an
unrelated folder, and never a run with a report. Outputs get the permissions the
user's umask gives ordinary files (the temporary-file functions use 0600/0700).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from featgraph.errors import BadInput, FeatgraphError

if TYPE_CHECKING:
    import pandas as pd

MARKER = ".featgraph"
DB_NAME = "graph.lbdb"  # the embedded store inside a run directory
# The files a run directory owns; no output may be written over them.
RUN_FILES = frozenset({"edges.parquet", "features.parquet", "manifest.json", "edges.csv", "tetrads.parquet",
                       "validation.parquet", DB_NAME, MARKER})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_mode(path: Path) -> None:
    """Give a staged file or directory the mode an ordinary `open`/`mkdir` would have."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~_umask())


def marker_kind(path: Path) -> str | None:
    """What featgraph made `path` as (`run`, `report`, …), or None if it did not make it."""
    path = Path(path)
    m = path / MARKER
    if m.is_file():
        try:
            return str(json.loads(m.read_text()).get("kind"))
        except (OSError, ValueError, AttributeError):
            return None
    # Runs written before the marker existed: a manifest beside the edge table.
    if (path / "manifest.json").is_file() and (path / "edges.parquet").is_file():
        return "run"
    return None


def write_marker(directory: Path, kind: str) -> None:
    from featgraph import __version__

    (Path(directory) / MARKER).write_text(json.dumps({"kind": kind, "featgraph_version": __version__}) + "\n")


def check_target(out: Path, force: bool, kind: str = "run") -> None:
    """Refuse early (before any work) an output directory we must not replace."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise BadInput(f"{out} exists and is not a directory: choose another --out")
        made = marker_kind(out)
        if made != kind:
            what = f"a featgraph {made}" if made else "not something featgraph made"
            raise BadInput(f"{out} already exists and is {what}, so featgraph will not replace it with a {kind}: "
                           "choose another --out")
        if not force:
            raise BadInput(f"{out} already exists: choose another --out or pass --force to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"cannot create {parent}: {e.strerror}; choose a writable --out") from None
    if not os.access(parent, os.W_OK):
        raise BadInput(f"cannot write into {parent}: choose a writable --out")


@contextlib.contextmanager
def staged_dir(out: Path, force: bool, kind: str = "run") -> Iterator[Path]:
    """Yield a temporary directory that replaces `out` only if the block succeeds."""
    out = Path(out)
    check_target(out, force, kind)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        write_marker(tmp, kind)
        _normal_mode(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_output_file(out: Path, suffixes: tuple[str, ...], force: bool = False) -> Path:
    """Refuse, before any work, an output file of the wrong kind, in a missing folder, or over one we must keep."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise BadInput(f"--out must be a {' or '.join(suffixes)} file, got {out}")
    if not out.parent.exists():
        raise BadInput(f"{out.parent} does not exist: create it or choose another --out")
    protect_run_files(out)
    if out.exists() and not force:
        raise BadInput(f"{out} already exists: choose another --out or pass --force to replace it")
    if out.is_dir():
        raise BadInput(f"{out} is a directory: choose a file name")
    return out


def protect_run_files(out: Path) -> None:
    """Refuse to write over a run's own files (edges, features, manifest, …)."""
    out = Path(out)
    if out.name in RUN_FILES and marker_kind(out.parent) in ("run", "atlas"):
        raise BadInput(f"{out} belongs to the run in {out.parent}: choose another output path")


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed onto it on success."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror}; choose a writable location") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _normal_mode(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with staged_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    except OSError as e:
        raise FeatgraphError(f"cannot read {path}: {e.strerror}") from None
    return h.hexdigest()


def write_frame(df: pd.DataFrame, out: Path) -> Path:
    """Write a table whole or not at all: CSV for a .csv name, Parquet otherwise."""
    with staged_file(out) as tmp:
        if out.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return out

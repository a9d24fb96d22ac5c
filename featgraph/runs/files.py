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
import errno
import functools
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from featgraph.errors import BadInput, FeatgraphError

if TYPE_CHECKING:
    import pandas as pd

F = TypeVar("F", bound=Callable[..., Any])

MARKER = ".featgraph"
DB_NAME = "graph.lbdb"  # the embedded store inside a run directory
# The files a run directory owns; no output may be written over them.
RUN_FILES = frozenset({"edges.parquet", "features.parquet", "manifest.json", "edges.csv", "tetrads.parquet",
                       "validation.parquet", DB_NAME, MARKER, "attribution"})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_mode(path: Path) -> None:
    """Give a staged file or directory the mode an ordinary `open`/`mkdir` would have."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~_umask())


def marker_kind(path: Path, legacy: bool = True) -> str | None:
    """What featgraph made `path` as (`run`, `report`, …), or None if it did not make it.

    With `legacy`, a folder holding manifest.json beside edges.parquet (runs written before the marker existed)
    counts as a run — good enough to read it or to protect its files, never to delete it (check_target)."""
    path = Path(path)
    m = path / MARKER
    if m.is_file() and not m.is_symlink():
        try:
            return str(json.loads(m.read_text()).get("kind"))
        except (OSError, ValueError, AttributeError):
            return None
    if legacy and (path / "manifest.json").is_file() and (path / "edges.parquet").is_file():
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
        made = marker_kind(out, legacy=False)  # only featgraph's own marker lets --force replace a folder
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


def check_output_file(out: Path, suffixes: tuple[str, ...], force: bool = False, flag: str = "--out") -> Path:
    """Refuse, before any work, an output file of the wrong kind, in a missing folder, or over one we must keep.
    `flag`: the option that names the file (messages name it)."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise BadInput(f"{flag} must be a {' or '.join(suffixes)} file, got {out}")
    if not out.parent.exists():
        raise BadInput(f"{out.parent} does not exist: create it or choose another {flag}")
    protect_run_files(out)
    if out.exists() and not force:
        raise BadInput(f"{out} already exists: choose another {flag} or pass --force to replace it")
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


def sha256_cached(path: Path) -> str:
    """sha256(path), computed once per version of the file in this process (its resolved path, size, mtime and
    inode): an atlas reads each SAE in two layers (the output of L, the input of L+1)."""
    try:
        st = Path(path).stat()
        where = str(Path(path).resolve())
    except OSError as e:
        raise FeatgraphError(f"cannot read {path}: {e.strerror}") from None
    return _sha256_version(where, st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=256)
def _sha256_version(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return sha256(Path(path))


def write_frame(df: pd.DataFrame, out: Path) -> Path:
    """Write a table whole or not at all: CSV for a .csv name (text cells that start like a formula get a `'`, as
    in every CSV of labels featgraph writes), Parquet otherwise."""
    from featgraph.core.cells import csv_safe

    with staged_file(out) as tmp:
        if out.suffix.lower() == ".csv":
            csv_safe(df).to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return out


def open_lock(path: Path) -> int:
    """A descriptor of the lock file `path`, made if missing; never opened through a symbolic link, never truncated
    (a link or hard link planted there cannot make featgraph write to its target), and refused unless a plain file."""
    path = Path(path)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadInput(f"{path} is a symbolic link: featgraph does not write through links there; remove it") from None
        raise BadInput(f"cannot open the lock file {path}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadInput(f"{path} is not a plain file: featgraph keeps its lock there; remove it")
    return fd


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `out` for this process for the block: an exclusive lock on `.NAME.lock` beside it, so a second
    featgraph writing the same output stops at once with one line instead of mixing its results in. The lock file
    is removed on the way out."""
    import fcntl

    out = Path(out)
    path = out.parent / f".{out.name}.lock"
    if not out.parent.exists():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"cannot create {out.parent}: {e.strerror}; choose a writable --out") from None
    while True:
        fd = open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BadInput(f"{out} is being written by another featgraph process: wait for it to finish or choose "
                           "another --out") from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file we opened: lock the new one
    try:
        # what a killed writer of this output left beside it (staged_dir's .NAME.tmp-*/.old-*, atlasdir's .NAME.new-*)
        remove_stale(p for pattern in (".tmp-*", ".old-*", ".new-*") for p in out.parent.glob(f".{glob.escape(out.name)}{pattern}"))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def remove_stale(paths: Iterable[Path]) -> None:
    """Remove staging leftovers of killed runs (the caller holds the lock that makes them stale): a folder with what
    it holds, a file or a symbolic link itself (never what a link points to)."""
    for p in paths:
        if p.is_symlink() or not p.is_dir():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)


def holds_output(fn: F) -> F:
    """Decorate an API call with an `out` parameter so that it holds `output_lock(out)` from start to end."""
    import inspect

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = sig.bind(*args, **kwargs).arguments.get("out")
        if out is None:
            return fn(*args, **kwargs)
        with output_lock(Path(out)):
            return fn(*args, **kwargs)

    return call  # type: ignore[return-value]

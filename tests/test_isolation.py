"""Two test runs (or two users) at once on one machine (issue 21): what the scripts fetch or compile on first use
into the checkout is done by one of them at a time, the other waiting for it."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO


def _waiting_in_flock(pid: int) -> bool:
    """Whether a child of `pid` is a `flock` command (the script waiting for the lock)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat, cmd = (p / "stat").read_text(), (p / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and cmd.split(b"\0")[0].endswith(b"flock"):
            return True
    return False


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) (util-linux) is not installed")
@pytest.mark.parametrize(("script", "lock"), [("neo4j-server", ".neo4j/.fetch.lock"), ("graphml-check", ".jgrapht/.build.lock")])
def test_first_use_fetch_waits_for_the_one_under_way(tmp_path, script, lock):
    """A copy of the script in a fresh checkout, its jars not fetched, the fetch lock held (as a first run's fetch
    holds it): the script waits in flock and calls Maven (a stand-in here) only once the lock is released."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / script, root / "scripts" / script)
    tools = tmp_path / "bin"
    tools.mkdir()
    ran = tmp_path / "mvn-ran"
    (tools / "mvn").write_text(f'#!/bin/sh\ntouch "{ran}"\nexit 3\n')
    (tools / "mvn").chmod(0o755)
    (root / lock).parent.mkdir(parents=True)
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}", NEO4J_PASSWORD="x" * 12)
    with open(root / lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen(["bash", str(root / "scripts" / script), str(tmp_path / "arg")], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while not ran.exists() and not _waiting_in_flock(proc.pid) and proc.poll() is None:
                time.sleep(0.01)
            assert not ran.exists(), "Maven ran while another fetch held the lock"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ran.exists() and proc.returncode == 3  # the fetch went on after the release (and stopped at Maven's exit)

"""Every command's --help shows metavars a reader understands, never a Python type (`<list[Path]>`)."""

from __future__ import annotations

import re

import typer

from featgraph.cli.app import app

from helpers import fg

PYTHON_TYPES = re.compile(r"list\[|tuple\[|dict\[|Optional\[|Union\[|NoneType|<bool>|<list|<Path>|typing\.")


def test_no_help_renders_a_python_type():
    group = typer.main.get_command(app)
    names = list(group.commands)
    assert len(names) >= 10
    for name in names:
        r = fg(name, "--help")
        assert r.exit_code == 0, (name, r.output)
        assert not PYTHON_TYPES.search(r.stdout), (name, PYTHON_TYPES.search(r.stdout).group(0), r.stdout)
    assert "--label-source PATH" in fg("extract", "--help").stdout

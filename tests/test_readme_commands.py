"""The README's command table keeps up with the command line: every command has a row, and every option of
the command appears in its row, or the row says where the rest are (`--help`)."""

from __future__ import annotations

import re

import pytest
import typer

from featgraph.cli.app import app

from helpers import REPO, fg


def _rows() -> dict[str, str]:
    """Command name -> its row in the table under `## Commands` (a row may hold several commands)."""
    text = REPO.joinpath("README.md").read_text(encoding="utf-8")
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split(" | ", 1)[0]
            for name in re.findall(r"`([a-z][a-z0-9-]*)[ `]", first):
                rows.setdefault(name, line)
    return rows


def _options(cmd) -> list[str]:
    opts = []
    for p in cmd.params:
        opts += [o for o in (*p.opts, *p.secondary_opts) if o.startswith("--") and o != "--help"]
    return opts


def test_every_option_of_every_command_is_in_the_readme_table():
    rows = _rows()
    group = typer.main.get_command(app)
    assert len(rows) >= 15, sorted(rows)
    missing = {}
    for name, cmd in group.commands.items():
        assert name in rows, f"the README's command table has no row for `{name}`"
        row = rows[name]
        if "--help" in row:
            continue
        gone = [o for o in _options(cmd) if not re.search(re.escape(o) + r"(?![a-z-])", row)]
        if gone:
            missing[name] = gone
    assert not missing, f"options missing from the README's command table (list them, or point the row to --help): {missing}"


def test_readme_commands_run_as_written_after_setup():
    """scripts/setup puts nothing on PATH: no command line in a bash block starts with a bare `featgraph`/`pip`/`python`."""
    text = REPO.joinpath("README.md").read_text(encoding="utf-8")
    bare = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            words = line.split()
            if words and (words[0] in ("featgraph", "pip", "python", "python3") or "&& featgraph" in line):
                bare.append(line)
    assert not bare, bare
    assert not re.findall(r"`(?:pip|python) [^`]*`", text), re.findall(r"`(?:pip|python) [^`]*`", text)


def test_the_demo_runs_again_and_its_hints_run_as_written(tmp_path, monkeypatch):
    from featgraph.api.demo import run_demo

    from helpers import fg

    out = tmp_path / "exports" / "demo"
    assert fg("demo", "--out", out).exit_code == 0
    (out / "run" / "stale").write_text("from the first demo")
    r = fg("demo", "--out", out)  # the README's first command, twice: the earlier demo is replaced
    assert r.exit_code == 0, r.output
    assert not (out / "run" / "stale").exists() and (out / "run" / "edges.parquet").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    r = fg("demo", "--out", other)
    assert r.exit_code == 2 and (other / "notes.txt").read_text() == "keep", r.output
    lines = run_demo(tmp_path / "d2", prog=".venv/bin/featgraph")
    hints = lines[lines.index("try next:") + 1:]
    assert hints and all(h.startswith("  .venv/bin/featgraph ") for h in hints), hints


@pytest.mark.slow
def test_readme_attribution_workflow_runs_as_written(tmp_path, monkeypatch):
    """The README's attribution-graph workflow (demo, import, load, the queries, qk-trace) runs line by line as
    written, in a fresh folder, and says what the prose under it says."""
    import json
    import shlex

    text = REPO.joinpath("README.md").read_text(encoding="utf-8")
    section = text.split("### Attribution graphs: from a circuit-tracer graph", 1)[1].split("\n### ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]  # the demo's (the next one needs a real graph)
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for line in block.strip().splitlines():
        words = shlex.split(line, comments=True)
        assert words[0] == ".venv/bin/featgraph", line
        r = fg(*words[1:], *(["--format", "csv"] if words[1] == "query" else []))
        assert r.exit_code == 0, (line, r.output)
        outputs[" ".join(words[1:3]) + (" " + words[3] if words[1] == "query" else "")] = r.stdout
    heads = outputs["query exports/demo/run link_heads"]
    assert sorted(line.split(",")[6] for line in heads.strip().splitlines()[1:]) == ["0", "3"], heads
    assert all(line.startswith("0_24_3,1_58_8,") for line in heads.strip().splitlines()[1:]), heads
    keys = outputs["query exports/demo/run attended_keys"].strip().splitlines()
    assert len(keys) == 2 and ",0,0_59_3," in keys[1], keys
    doc = json.loads((tmp_path / "exports" / "demo" / "graph-qk.json").read_text())
    assert next(n for n in doc["nodes"] if n["node_id"] == "1_58_8")["qk_tracing_results"]["pair_wise_contributors"]

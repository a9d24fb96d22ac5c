"""The `featgraph` command line: each command parses options and calls one library function.

Heavy imports (torch, pandas, stores) happen inside the commands so `--help` is instant.
Errors: one line on stderr naming the problem and the fix; exit 2 for bad input,
1 otherwise; `--debug` shows the traceback.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="SAE-feature circuits of Gemma 2 attention heads, from the weights alone, as a Cypher-queryable graph.",
)
_state = {"debug": False}

# Arguments several commands share.
RunOrEdges = Annotated[Path, typer.Argument(help="Run directory or edge file (.parquet/.csv).")]
HeadOpt = Annotated[int, typer.Option(help="Head.")]
CircuitOpt = Annotated[str, typer.Option(help="qk or ov.")]
FormatOpt = Annotated[str, typer.Option("--format", help="md, csv or json.")]
ModelOpt = Annotated[str, typer.Option(help="HF repo id[@revision] or local model directory.")]
LayerOpt = Annotated[int, typer.Option(help="Attention layer.")]
SaeInOpt = Annotated[Optional[str], typer.Option(help="SAE read at the layer's input (default: canonical 16k residual SAE of layer-1).")]


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")):
    _state["debug"] = debug


@contextlib.contextmanager
def _guard():
    """Turn anticipated failures into one line and an exit status."""
    from featgraph.errors import FeatgraphError

    try:
        yield
    except typer.Exit:
        raise
    except FeatgraphError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except BrokenPipeError:  # e.g. `featgraph tables … | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was written", err=True)
        raise typer.Exit(130) from None
    except Exception as e:  # unexpected: still one line unless --debug
        if _state["debug"]:
            raise
        typer.echo(f"error: {e.__class__.__name__}: {e} (re-run with --debug for the traceback)", err=True)
        raise typer.Exit(1) from None


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True, console=_console(), disable=not sys.stderr.isatty())


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _ints(text: Optional[str], what: str) -> Optional[tuple[int, ...]]:
    from featgraph.errors import BadInput

    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadInput(f"{what} must be comma-separated integers like 0,7, got {text!r}") from None


def _circuits(text: str) -> tuple[str, ...]:
    from featgraph.errors import BadInput
    from featgraph.schema import normalise_circuit

    try:
        return tuple(dict.fromkeys(normalise_circuit(x) for x in text.split(",") if x.strip()))
    except ValueError as e:
        raise BadInput(f"--circuits takes qk, ov or qk,ov; {e.args[0]!r} is neither") from None


def _circuit(text: str) -> str:
    from featgraph.errors import BadInput

    found = _circuits(text)
    if len(found) != 1:
        raise BadInput(f"--circuit takes one of qk or ov, got {text!r}")
    return found[0]


@app.command(epilog="Example: featgraph extract --layer 13 --heads 0,7 --top-k 1000 --out exports/layer13")
def extract(
    out: Path = typer.Option(..., "--out", help="Run directory to create."),
    model: ModelOpt = "google/gemma-2-2b",
    layer: LayerOpt = 13,
    sae_in: SaeInOpt = None,
    sae_out: Optional[str] = typer.Option(None, help="SAE read at the layer's output (default: canonical 16k residual SAE of the layer)."),
    heads: Optional[str] = typer.Option(None, help="Comma-separated heads (default: all)."),
    circuits: str = typer.Option("qk,ov", help="qk, ov or qk,ov."),
    top_k: Optional[int] = typer.Option(None, help="Edges kept per (head, circuit) by |weight| [default: 1000 unless --min-abs]."),
    min_abs: Optional[float] = typer.Option(None, help="Keep every edge with |weight| >= W."),
    per_source_k: Optional[int] = typer.Option(None, help="Also keep each source feature's k strongest edges."),
    precision: str = typer.Option("fp32", help="Candidate kernel: fp32, tf32 or bf16 (values are always re-scored exactly)."),
    attn_scale: bool = typer.Option(False, "--attn-scale", help="Multiply QK by 1/sqrt(query_pre_attn_scalar)."),
    rope_offset: int = typer.Option(0, help="QK with the key this many tokens before the query (0 = the post)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    block_mb: int = typer.Option(256, help="Memory budget of one block of a matrix, MiB."),
    model_id: Optional[str] = typer.Option(None, help="Neuronpedia model id (default: the repo name)."),
    sae_in_id: Optional[str] = typer.Option(None, help="Neuronpedia source id of --sae-in (default: from its Gemma Scope path)."),
    sae_out_id: Optional[str] = typer.Option(None, help="Neuronpedia source id of --sae-out."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Attach Neuronpedia labels after extracting."),
    label_source: list[Path] = typer.Option([], help="Local label export(s) instead of downloading."),
    csv: bool = typer.Option(False, "--csv", help="Also write edges.csv."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory."),
):
    """Compute a run directory of per-head QK/OV edges between SAE features."""
    with _guard():
        from featgraph.circuits import Conventions
        from featgraph.extract import ExtractConfig, run_extract
        from featgraph.select import Selection

        sel = Selection(top_k=top_k if (top_k is not None or min_abs is not None or per_source_k is not None) else 1000,
                        min_abs=min_abs, per_source_k=per_source_k, precision=precision, block_bytes=block_mb << 20)
        cfg = ExtractConfig(model=model, layer=layer, sae_in=sae_in, sae_out=sae_out, heads=_ints(heads, "--heads"),
                            circuits=_circuits(circuits), selection=sel,
                            conventions=Conventions(attn_scale=attn_scale, rope_offset=rope_offset),
                            device=device, model_id=model_id, sae_in_id=sae_in_id, sae_out_id=sae_out_id)
        with _progress() as prog:
            def factory(desc: str, total: int):
                task = prog.add_task(desc, total=total)
                return lambda n: prog.advance(task, n)

            run = run_extract(cfg, out, force=force, csv=csv, progress=factory)
        typer.echo(f"wrote {run}")
        if labels:
            _attach_labels(run, tuple(label_source), (), warn_only=not label_source)


def _attach_labels(run: Path, sources: tuple[Path, ...], prefer: tuple[str, ...], warn_only: bool) -> None:
    from featgraph.annotate import attach
    from featgraph.errors import BadInput, FeatgraphError

    try:
        with _progress() as prog:
            task = prog.add_task("Neuronpedia labels", total=None)
            rep = attach(run, sources, prefer, progress=lambda done, total: prog.update(task, completed=done, total=total))
    except FeatgraphError as e:
        if not warn_only or isinstance(e, BadInput):
            raise
        typer.echo(f"warning: labels not attached ({e}); run `featgraph labels {run}` later", err=True)
        return
    typer.echo(f"labelled {rep.labelled} of {rep.features} features")


@app.command("labels", epilog="Example: featgraph labels exports/layer13 --source ../shared/data/neuronpedia/")
def labels_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    source: list[Path] = typer.Option([], help="Legacy JSON export, .jsonl(.gz) file, or a directory of them (default: download)."),
    prefer: list[str] = typer.Option([], help="Explainer model(s) to prefer when a feature has several explanations."),
):
    """Attach Neuronpedia descriptions to a run's features."""
    with _guard():
        _attach_labels(run, tuple(source), tuple(prefer), warn_only=False)


@app.command("import", epilog="Example: featgraph import my_edges.csv --out exports/mine")
def import_cmd(
    edge_file: Path = typer.Argument(..., help="Edge table (.parquet or .csv) in featgraph's schema."),
    out: Path = typer.Option(..., "--out", help="Run directory to create."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory."),
):
    """Make a run directory from an edge table computed elsewhere."""
    with _guard():
        from featgraph.export import import_edges

        typer.echo(f"wrote {import_edges(edge_file, out, force)}")


@app.command(epilog="Example: featgraph tables exports/layer13 --head 0 --circuit qk --distinct --positive --top 20")
def tables(
    run: RunOrEdges,
    head: HeadOpt,
    circuit: CircuitOpt,
    distinct: bool = typer.Option(False, "--distinct", help="Drop like-to-like edges."),
    positive: bool = typer.Option(False, "--positive", help="Keep weight > 0 only."),
    top: int = typer.Option(30, help="Rows."),
    format: FormatOpt = "md",
):
    """The post's tables: rank, value, source and destination features with descriptions."""
    with _guard():
        from featgraph.analyse.tables import head_table, render
        from featgraph.export import read_run

        r = read_run(run)
        typer.echo(render(head_table(r.edges, r.features, head, _circuit(circuit), distinct, positive, top), format), nl=False)


@app.command(epilog="Example: featgraph demo --out exports/demo")
def demo(
    out: Path = typer.Option(Path("exports/demo"), "--out", help="Directory for the demo's inputs and run."),
    force: bool = typer.Option(True, "--force/--no-force", help="Replace a previous demo."),
):
    """Run the whole pipeline offline on a tiny synthetic Gemma 2 and SAEs (seconds)."""
    with _guard():
        from featgraph.demo import run_demo

        for line in run_demo(out, force=force):
            typer.echo(line)


@app.command(epilog="Example: featgraph load exports/layer13   (or --neo4j with NEO4J_URI/NEO4J_PASSWORD set)")
def load(
    run: Path = typer.Argument(..., help="Run directory."),
    neo4j: bool = typer.Option(False, "--neo4j", help="Load into Neo4j (NEO4J_URI, NEO4J_USERNAME, NEO4J_PASSWORD, NEO4J_DATABASE)."),
    run_name: Optional[str] = typer.Option(None, help="Name recorded on each edge (default: the run directory's name)."),
):
    """Load a run into the embedded graph store (default) or Neo4j; re-running replaces, never duplicates."""
    with _guard():
        from featgraph.graph.api import load as do_load

        counts = do_load(run, neo4j=neo4j, name=run_name)
        where = "Neo4j" if neo4j else "the embedded store"
        typer.echo(f"loaded {counts['nodes']} features, {counts['QK']} QK and {counts['OV']} OV edges into {where}")


@app.command(epilog="Example: featgraph query exports/layer13 top_edges --param head=0 --param circuit=QK")
def query(
    run: Optional[Path] = typer.Argument(None, help="Run directory (embedded store) — any value with --neo4j."),
    cypher: Optional[str] = typer.Argument(None, help="Cypher text, or a library query name (see --list)."),
    file: Optional[Path] = typer.Option(None, "--file", help="A .cypher file."),
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE, repeatable; typed by the query's header."),
    neo4j: bool = typer.Option(False, "--neo4j", help="Query Neo4j instead of the embedded store."),
    write: bool = typer.Option(False, "--write", help="Allow writes (Neo4j; read access mode otherwise)."),
    format: str = typer.Option("table", "--format", help="table, csv or json."),
    list_: bool = typer.Option(False, "--list", help="List the cypher/ library with descriptions and parameters."),
):
    """Run Cypher (literal, a library query, or --file) against a loaded run."""
    with _guard():
        from featgraph.graph import api

        if list_:
            typer.echo(api.describe_library(), nl=False)
            return
        if run is None:
            from featgraph.errors import BadInput

            raise BadInput("give the run directory first: featgraph query RUN (CYPHER | NAME | --file F)")
        typer.echo(api.render(api.query(run, cypher, file, param, neo4j=neo4j, write=write), format), nl=False)


@app.command("export", epilog="Example: featgraph export exports/layer13 --graphml layer13.graphml")
def export_cmd(
    run: RunOrEdges,
    graphml: Path = typer.Option(..., "--graphml", help="GraphML file to write (Gephi, Cytoscape)."),
):
    """Export a run's graph for other tools."""
    with _guard():
        from featgraph.export import read_run
        from featgraph.graph.nx import write_graphml

        typer.echo(f"wrote {write_graphml(read_run(run), graphml)}")


@app.command("export-neo4j", epilog="Example: featgraph export-neo4j exports/layer13 --out exports/layer13-import")
def export_neo4j(
    run: RunOrEdges,
    out: Path = typer.Option(..., "--out", help="Directory for the CSV files."),
    run_name: Optional[str] = typer.Option(None, help="Name recorded on each edge."),
    force: bool = typer.Option(False, "--force", help="Replace an existing directory."),
):
    """Write neo4j-admin bulk-import CSVs for graphs too large to load online."""
    with _guard():
        import shlex

        from featgraph.export import read_run
        from featgraph.graph.neo4j_store import export_admin_csv

        cmd = export_admin_csv(read_run(run), out, run_name, force)
        typer.echo(f"wrote {out}; import into an empty, stopped database with:\n  {shlex.join(cmd)}")


@app.command(epilog="Example: featgraph tetrads exports/layer13 --head 7 --circuit ov --top 20")
def tetrads(
    run: RunOrEdges,
    head: Optional[int] = typer.Option(None, help="Only this head."),
    circuit: Optional[str] = typer.Option(None, help="Only qk or ov."),
    top: int = typer.Option(20, help="Rows to print."),
    min_strength: float = typer.Option(0.0, help="Only tetrads whose weakest edge has |weight| >= S."),
    explain: bool = typer.Option(True, "--explain/--no-explain", help="Add source/destination cosines through the head (extracted runs; reloads the weights)."),
    format: FormatOpt = "md",
):
    """Find mutual-exclusion tetrads (sign checkerboards) and write tetrads.parquet into the run."""
    with _guard():
        from featgraph.analyse import report_ops

        lines = report_ops.tetrads_command(run, head, _circuit(circuit) if circuit else None, top, min_strength, explain, format)
        for err in lines.warnings:
            typer.echo(f"warning: {err}", err=True)
        if format == "md":
            typer.echo(lines.summary)
        else:
            typer.echo(lines.summary, err=True)
        typer.echo(lines.table, nl=False)


@app.command(epilog="Example: featgraph positional --layer 13 --out exports/positional.png")
def positional(
    out: Path = typer.Option(..., "--out", help="PNG to write (a CSV with head, distance, score goes beside it)."),
    model: ModelOpt = "google/gemma-2-2b",
    layer: LayerOpt = 13,
    sae_in: SaeInOpt = None,
    feature: list[str] = typer.Option([], "--feature", help="Also profile a feature against itself (ID) or a pair (QUERY_ID,KEY_ID)."),
    max_distance: int = typer.Option(8192, help="Largest token distance."),
):
    """Rotary positional profile per head: (R(Δ) q)·k of the input SAE's b_dec over token distance."""
    with _guard():
        from featgraph.analyse.report_ops import positional_command

        png, csv = positional_command(model, layer, sae_in, feature, out, max_distance)
        typer.echo(f"wrote {png} and {csv}")


@app.command(epilog="Example: featgraph correlation exports/layer13 --out exports/layer13/correlation.png")
def correlation(
    run: Path = typer.Argument(..., help="Run directory made by extract."),
    out: Path = typer.Option(..., "--out", help="PNG to write (CSV beside it)."),
    heads: Optional[str] = typer.Option(None, help="Comma-separated heads (default: all)."),
):
    """QK–OV sender correlation: each key/value feature's mean QK as a key against its mean |OV|, per head."""
    with _guard():
        from featgraph.analyse.report_ops import correlation_command

        png, csv, corr = correlation_command(run, out, _ints(heads, "--heads"))
        for h, r in corr.items():
            typer.echo(f"head {h}: r = {r:.4f}")
        typer.echo(f"wrote {png} and {csv}")


@app.command(epilog="Example: featgraph viz exports/layer13 --head 7 --circuit ov --top 60 --out head7.html")
def viz(
    run: RunOrEdges,
    head: HeadOpt,
    circuit: CircuitOpt,
    out: Path = typer.Option(..., "--out", help="HTML page to write (works offline)."),
    top: int = typer.Option(100, help="Strongest edges to draw."),
    feature: Optional[str] = typer.Option(None, help="Centre on this feature id."),
    hops: int = typer.Option(1, help="With --feature: neighbourhood radius."),
):
    """An interactive pyvis page of one head's circuit (arrows source → destination)."""
    with _guard():
        from featgraph.export import read_run
        from featgraph.render.viz import write_viz

        typer.echo(f"wrote {write_viz(read_run(run), head, _circuit(circuit), out, top, feature, hops)}")


@app.command(epilog="Example: featgraph report exports/layer13 --out exports/layer13-report")
def report(
    run: RunOrEdges,
    out: Path = typer.Option(..., "--out", help="Directory for index.html, per-head pages and plots."),
    top: int = typer.Option(15, help="Rows per table."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Positional and correlation plots (reload the weights)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing report directory."),
):
    """One HTML page per run: statistics, tables, tetrads, plots and links to per-head graphs."""
    with _guard():
        from featgraph.render.report import write_report

        index, warnings = write_report(run, out, top, force, plots)
        for w in warnings:
            typer.echo(f"warning: {w}", err=True)
        typer.echo(f"wrote {index}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

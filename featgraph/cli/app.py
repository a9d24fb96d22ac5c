"""The `featgraph` command line: each command parses options and calls the Python API once.

Heavy imports (torch, pandas, stores) happen inside the commands so `--help` is instant.
Errors are handled in one place (`_Guarded.invoke`): one line on stderr naming the
problem and the fix, exit 2 for bad input, 1 otherwise; `--debug` shows the
traceback. Library warnings (FeatgraphWarning) become `warning: …` lines.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

_state = {"debug": False}


class _Guarded(TyperGroup):
    """Every command runs inside this one guard (as huggingface_hub's CLI does)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _optional_values(args))
    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Command-line usage errors (an unknown option, a missing argument, a bad integer) are one line too, exit 2.

        typer ships its own copy of click, so its exceptions are recognised by their shape, not imported."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as e:
            kind = type(e).__name__
            if kind == "Abort":
                typer.echo("aborted: nothing was written", err=True)
                sys.exit(1)
            if not _is_usage_error(e):
                raise
            if kind == "NoArgsIsHelpError":  # `featgraph` alone: the help, as before
                e.show()  # type: ignore[attr-defined]
                sys.exit(e.exit_code)  # type: ignore[attr-defined]
            ctx = getattr(e, "ctx", None)
            where = " ".join(["featgraph", *(ctx.command_path.split()[1:] if ctx is not None else [])])
            typer.echo(f"error: {e.format_message().rstrip('.')} (see `{where} --help`)", err=True)  # type: ignore[attr-defined]
            sys.exit(e.exit_code)  # type: ignore[attr-defined]
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: typer.Context):
        import warnings

        from featgraph.errors import BadValue, FeatgraphError

        def show(message, category, filename, lineno, file=None, line=None):
            typer.echo(f"warning: {message}", err=True)

        with warnings.catch_warnings():
            warnings.showwarning = show
            try:
                return super().invoke(ctx)
            except (typer.Exit, typer.Abort):
                raise
            except FeatgraphError as e:
                if _state["debug"]:
                    raise
                msg = str(e)
                if isinstance(e, BadValue):
                    msg = e.message(f"--param {e.param}" if ctx.invoked_subcommand == "query" else e.flag)
                typer.echo(f"error: {msg}", err=True)
                raise typer.Exit(e.exit_code) from None
            except BrokenPipeError:  # e.g. `featgraph tables … | head`
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None
            except KeyboardInterrupt:
                typer.echo("interrupted: nothing was written", err=True)
                raise typer.Exit(130) from None
            except ModuleNotFoundError as e:  # an optional dependency (pyproject's extras)
                if _state["debug"] or not e.name:
                    raise
                top = e.name.split(".")[0]
                extra = _EXTRAS.get(top)
                fix = f"pip install 'featgraph[{extra}]'" if extra else f"pip install {top}"
                typer.echo(f"error: this command needs the Python package {top!r}, which is not installed: {fix}", err=True)
                raise typer.Exit(1) from None
            except Exception as e:  # unexpected: still one line unless --debug
                if _state["debug"] or _is_usage_error(e):
                    raise
                typer.echo(f"error: {e.__class__.__name__}: {e} (re-run with --debug for the traceback)", err=True)
                raise typer.Exit(1) from None


_EXTRAS = {"transformers": "validate", "ijson": "attribution", "ray": "ray"}  # optional packages and the pyproject extra that installs each


def _optional_values(args: list[str]) -> list[str]:
    """`--ray` given without an address (last, or before another option) means `--ray local`: typer's options
    cannot take an optional value."""
    out: list[str] = []
    for i, a in enumerate(args):
        out.append(a)
        if a == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append("local")
    return out


def _is_usage_error(e: Exception) -> bool:
    """A command-line parsing error (typer's click: ClickException), which click reports itself (exit 2)."""
    return hasattr(e, "exit_code") and callable(getattr(e, "show", None))


app = typer.Typer(
    cls=_Guarded,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="SAE-feature circuits of attention heads (Gemma 2/3/4, Llama, Mistral, Qwen2/3, GPT-2, Pythia), from the "
    "weights alone, as a Cypher-queryable graph.",
)

# Arguments several commands share.
RunArg = Annotated[Path, typer.Argument(help="Run directory.", show_default=False, metavar="RUN")]
RunOrEdges = Annotated[Path, typer.Argument(help="Run directory or edge file (.parquet/.csv).", show_default=False, metavar="RUN")]
OneLayerOpt = Annotated[Optional[int], typer.Option(
    "--layer", help="Layer of a multi-layer run (an atlas) [default: the run's only layer].", show_default=False)]
HeadOpt = Annotated[int, typer.Option(help="Attention head.", show_default=False)]
CircuitOpt = Annotated[str, typer.Option(help="qk or ov.", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", help="md, csv or json.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output file, or an output folder featgraph made of the same kind.")]
ModelOpt = Annotated[str, typer.Option(help="HF repo id[@revision] or local model directory.")]
LayerOpt = Annotated[int, typer.Option(help="Attention layer.")]
SaeInOpt = Annotated[Optional[str], typer.Option(
    help="SAE read at the layer's input, or an earlier layer's transcoder (its decoder rows) [default: the registry's "
    "residual SAE at the layer's input, by hook point: Gemma Scope's canonical 16k of layer-1 for Gemma 2 2B].", show_default=False)]


def _version(value: bool) -> None:
    if value:
        from featgraph import __version__

        typer.echo(f"featgraph {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print featgraph's version and exit.")):
    _state["debug"] = debug


def _progress():
    """A ProgressFactory drawing rich bars (with ETA) on stderr while the `with` block runs."""
    import contextlib

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    @contextlib.contextmanager
    def bars():
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), transient=True, console=Console(stderr=True),
                      disable=not sys.stderr.isatty()) as prog:
            def factory(description: str, total: int | None):
                task = prog.add_task(description, total=total)
                return lambda n: prog.advance(task, n)

            yield factory

    return bars()


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

    parts = [x.strip() for x in text.split(",") if x.strip()]
    if not parts or any(p.upper() not in ("QK", "OV") for p in parts):
        raise BadInput(f"--circuits takes qk, ov or qk,ov, got {text!r}")
    return tuple(dict.fromkeys(p.upper() for p in parts))


def _circuit(text: str) -> str:
    from featgraph.errors import BadInput

    if text.strip().upper() not in ("QK", "OV"):
        raise BadInput(f"--circuit takes one of qk or ov, got {text!r}")
    return text.strip().upper()


def _out(text: str) -> None:
    typer.echo(text, nl=False)


@app.command(epilog="Examples:\n  featgraph extract --layer 13 --heads 0,7 --top-k 1000 --out exports/layer13\n  Gemma 3: "
             "featgraph extract --model google/gemma-3-1b-pt --layer 13 --sae-in gemma-scope-2-1b-pt-res-all/layer_12_width_16k_l0_small "
             "--sae-out gemma-scope-2-1b-pt-res-all/layer_13_width_16k_l0_small --out exports/g3-layer13")
def extract(
    out: Path = typer.Option(..., "--out", help="Run directory to create.", show_default=False),
    model: ModelOpt = "google/gemma-2-2b",
    layer: LayerOpt = 13,
    sae_in: SaeInOpt = None,
    sae_out: Optional[str] = typer.Option(
        None, help="SAE read at the layer's output: a residual SAE of the layer, an attention-output SAE (the heads' "
        "outputs before o_proj), or the transcoder of this or a later layer (its encoder, through that layer's pre-MLP "
        "norm) [default: the registry's residual SAE after the layer, by hook point: Gemma Scope's canonical 16k "
        "for Gemma 2 2B].", show_default=False),
    ov_target: str = typer.Option("auto", help="What --sae-out reads: resid (the residual stream), attn (the heads' "
                                  "outputs before o_proj), or auto (by its input size)."),
    heads: Optional[str] = typer.Option(None, help="Comma-separated heads [default: all].", show_default=False),
    circuits: str = typer.Option("qk,ov", help="qk, ov or qk,ov."),
    top_k: Optional[int] = typer.Option(
        None, help="Edges kept per (head, circuit) by |weight| [default: 1000 unless --min-abs or --per-source-k].",
        show_default=False),
    min_abs: Optional[float] = typer.Option(None, help="Keep every edge with |weight| >= W.", show_default=False),
    per_source_k: Optional[int] = typer.Option(None, help="Also keep each source feature's k strongest edges.", show_default=False),
    precision: str = typer.Option("auto", help="Candidate kernel: fp32, tf32, bf16, or auto (bf16 on a GPU, fp32 on a CPU); "
                                  "values are always re-scored exactly, so every choice gives the same edges."),
    attn_scale: bool = typer.Option(False, "--attn-scale", help="Multiply QK by 1/sqrt(query_pre_attn_scalar)."),
    rope_offset: int = typer.Option(0, help="QK with the key this many tokens before the query (0 = the post)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    block_mb: Optional[int] = typer.Option(None, help="Memory budget of one block of a matrix, MiB [default: 256 on a CPU, "
                                           "half the free memory on a GPU].", show_default=False),
    model_id: Optional[str] = typer.Option(None, help="Neuronpedia model id [default: inferred from the model].", show_default=False),
    sae_in_id: Optional[str] = typer.Option(None, help="Neuronpedia source id of --sae-in [default: inferred].", show_default=False),
    sae_out_id: Optional[str] = typer.Option(None, help="Neuronpedia source id of --sae-out [default: inferred].", show_default=False),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Attach Neuronpedia labels after extracting."),
    label_source: list[Path] = typer.Option([], help="Local label export(s) instead of downloading.", show_default=False,
                                            metavar="PATH"),
    csv: bool = typer.Option(False, "--csv", help="Also write edges.csv."),
    restart: bool = typer.Option(False, "--restart", help="Discard the matrices an interrupted extract of --out finished."),
    force: ForceOpt = False,
):
    """Compute a run directory of per-head QK/OV edges between SAE features (an interrupted run resumes)."""
    from featgraph.api.compute import extract as do_extract

    default_k = top_k is None and min_abs is None and per_source_k is None
    with _progress() as progress:
        run = do_extract(model=model, layer=layer, sae_in=sae_in, sae_out=sae_out, heads=_ints(heads, "--heads"),
                         circuits=_circuits(circuits), top_k=1000 if default_k else top_k, min_abs=min_abs,
                         per_source_k=per_source_k, precision=precision, attn_scale=attn_scale, rope_offset=rope_offset,
                         device=device, block_mb=block_mb, model_id=model_id, sae_in_id=sae_in_id, sae_out_id=sae_out_id,
                         out=out, force=force, csv=csv, labels=labels, label_sources=label_source, restart=restart,
                         ov_target=ov_target, progress=progress)
    typer.echo(f"wrote {run.path}")
    if run.manifest.labels:
        typer.echo(f"labelled {run.manifest.labels['labelled']} of {run.manifest.labels['features']} features")


@app.command(epilog="Examples (Gemma 2 2B with Gemma Scope's canonical 16k residual SAEs, then other SAEs):\n"
             "  featgraph atlas --layers 1-25 --out exports/atlas\n"
             "  featgraph atlas --layers 1-3 --sae-template 'saes/layer_{layer}/params.npz' --out exports/atlas-local\n"
             "  featgraph atlas --model google/gemma-3-1b-pt --layers 1-25 "
             "--sae-template gemma-scope-2-1b-pt-res-all/layer_{layer}_width_16k_l0_small --out exports/g3-atlas\n"
             "  featgraph atlas --layers 1-25 --sae-template 'gemma-scope-2b-pt-transcoders/layer_{layer}' --out exports/tc   "
             "(transcoders, the features of circuit-tracer's Gemma graphs)")
def atlas(
    out: Path = typer.Option(..., "--out", help="Atlas directory (created, or continued when interrupted).", show_default=False),
    layers: str = typer.Option("1-25", help="Layers and ranges, e.g. 1-25 or 1,5,7-9 (layer L reads the SAE of L-1).",
                               metavar="LAYERS"),
    model: ModelOpt = "google/gemma-2-2b",
    sae_template: Optional[str] = typer.Option(
        None, help="Where each layer's residual SAE (or transcoder) is, with {layer}: a path, Hub path or SAELens-style id "
        "[default: Gemma Scope's canonical 16k residual SAEs].", show_default=False, metavar="TEMPLATE"),
    sae_id_template: Optional[str] = typer.Option(
        None, help="Neuronpedia source id of each layer's SAE, with {layer} [default: inferred].", show_default=False,
        metavar="TEMPLATE"),
    heads: Optional[str] = typer.Option(None, help="Comma-separated heads of every layer [default: all].", show_default=False),
    circuits: str = typer.Option("qk,ov", help="qk, ov or qk,ov."),
    top_k: Optional[int] = typer.Option(
        None, help="Edges kept per (layer, head, circuit) by |weight| [default: 1000 unless --min-abs or --per-source-k].",
        show_default=False),
    min_abs: Optional[float] = typer.Option(None, help="Keep every edge with |weight| >= W.", show_default=False),
    per_source_k: Optional[int] = typer.Option(None, help="Also keep each source feature's k strongest edges.", show_default=False),
    precision: str = typer.Option("auto", help="Candidate kernel: fp32, tf32, bf16, or auto (the edges are the same)."),
    attn_scale: bool = typer.Option(False, "--attn-scale", help="Multiply QK by 1/sqrt(query_pre_attn_scalar)."),
    rope_offset: int = typer.Option(0, help="QK with the key this many tokens before the query."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    block_mb: Optional[int] = typer.Option(None, help="Memory budget of one block of a matrix, MiB.", show_default=False),
    model_id: Optional[str] = typer.Option(None, help="Neuronpedia model id [default: inferred from the model].", show_default=False),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Attach Neuronpedia labels to each layer."),
    label_source: list[Path] = typer.Option([], help="Local label export(s) instead of downloading.", show_default=False,
                                            metavar="PATH"),
    force: bool = typer.Option(False, "--force", help="Start the atlas in --out over (recompute every layer)."),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Run the layers as Ray tasks: alone, a local Ray runtime on this machine's GPUs or CPUs; with "
        "an address (auto, HOST:PORT, ray://HOST:PORT), that cluster. Needs featgraph[ray].", show_default=False,
        metavar="[ADDRESS]"),
    heads_per_task: Optional[int] = typer.Option(
        None, help="Heads per Ray task [default: a layer per task, split when the cluster has more slots than layers].",
        show_default=False),
    cpus_per_task: int = typer.Option(1, help="CPUs each Ray task asks for when the tasks run on CPUs."),
):
    """Every head of every chosen layer, QK and OV, in one graph (features shared across layers); resumes when interrupted."""
    from featgraph.api.multilayer import atlas as do_atlas
    from featgraph.api.multilayer import parse_layers

    default_k = top_k is None and min_abs is None and per_source_k is None
    wanted = parse_layers(layers)
    with _progress() as progress:
        run = do_atlas(model=model, layers=wanted, out=out, heads=_ints(heads, "--heads"), circuits=_circuits(circuits),
                       top_k=1000 if default_k else top_k, min_abs=min_abs, per_source_k=per_source_k, precision=precision,
                       attn_scale=attn_scale, rope_offset=rope_offset, device=device, block_mb=block_mb, model_id=model_id,
                       sae_template=sae_template, sae_id_template=sae_id_template, labels=labels, label_sources=label_source, force=force,
                       progress=progress, ray=ray, heads_per_task=heads_per_task, cpus_per_task=cpus_per_task)
    typer.echo(f"wrote {run.path}: layers {', '.join(map(str, run.layers))}, {len(run.edge_table):,} edges, "
               f"{len(run.features):,} features")


@app.command("labels", epilog="Example: featgraph labels exports/layer13 --source labels/gemma-2-2b_12-gemmascope-res-16k.json")
def labels_cmd(
    run: RunArg,
    source: list[Path] = typer.Option([], help="Legacy JSON export, .jsonl(.gz) file, or a directory of them [default: download].",
                                      show_default=False, metavar="PATH"),
    prefer: list[str] = typer.Option([], help="Explainer model(s) to prefer when a feature has several explanations.",
                                     show_default=False, metavar="MODEL"),
):
    """Attach Neuronpedia descriptions to a run's features (features a source does not cover keep theirs)."""
    from featgraph.api.run import open_run
    from featgraph.core.annotate import LabelCounts

    with _progress() as progress:
        r = open_run(run).label(source, prefer, progress=progress)
    counts = LabelCounts(**{k: r.manifest.labels[k] for k in ("features", "matched", "replaced", "kept", "labelled")})
    typer.echo(counts.describe())


@app.command("import", epilog="Examples: featgraph import my_edges.csv --out exports/mine\n\n"
             "featgraph import dallas.json --out exports/layer13 --source-set gemmascope-transcoder-16k   (an attribution graph "
             "beside the run's edges; then featgraph load exports/layer13)")
def import_cmd(
    edge_file: Path = typer.Argument(..., help="Edge table (.parquet or .csv) in featgraph's schema, or an attribution graph "
                                     "(circuit-tracer / Neuronpedia graph JSON, .json or .json.gz).", show_default=False),
    out: Path = typer.Option(..., "--out", help="Run directory to create; for a graph, an existing run to add it to.", show_default=False),
    force: ForceOpt = False,
    source_set: Optional[str] = typer.Option(None, "--source-set", help="Graph: Neuronpedia source set of its transcoder features "
                                             "(e.g. gemmascope-transcoder-16k) [default: the file's feature_details].", show_default=False),
    lorsa_source_set: Optional[str] = typer.Option(None, "--lorsa-source-set", help="Graph: source set of its Lorsa (attention) "
                                                   "features.", show_default=False),
    model_id: Optional[str] = typer.Option(None, "--model-id", help="Graph: Neuronpedia model id of its features [default: "
                                           "metadata.scan].", show_default=False),
):
    """Make a run directory from an edge table computed elsewhere, or add an attribution graph to a run."""
    name = edge_file.name.lower()
    if name.endswith((".json", ".json.gz")):
        from featgraph.api.attribution import import_graph

        if force:
            from featgraph.errors import BadInput

            raise BadInput("--force does not apply to a graph: each import adds a new graph beside the others")
        g = import_graph(edge_file, out, model_id=model_id, source_set=source_set, lorsa_source_set=lorsa_source_set)
        typer.echo(f"imported graph {g.id} ({g.nodes} nodes, {g.links} links) into {g.run}; "
                   f"load it with `featgraph load {g.run}`")
        return
    if source_set or lorsa_source_set or model_id:
        from featgraph.errors import BadInput

        raise BadInput("--source-set, --lorsa-source-set and --model-id apply to an attribution graph (.json), not an edge table")
    from featgraph.api.run import import_edges

    typer.echo(f"wrote {import_edges(edge_file, out, force).path}")


@app.command(epilog="Example: featgraph tables exports/layer13 --head 0 --circuit qk --distinct --positive --top 20")
def tables(
    run: RunOrEdges,
    head: HeadOpt,
    circuit: CircuitOpt,
    distinct: bool = typer.Option(False, "--distinct", help="Drop like-to-like edges."),
    positive: bool = typer.Option(False, "--positive", help="Keep weight > 0 only."),
    top: int = typer.Option(30, help="Rows."),
    layer: OneLayerOpt = None,
    format: FormatOpt = "md",
):
    """The post's tables: rank, value, source and destination features with descriptions."""
    from featgraph.analyse.tables import post_view
    from featgraph.api.run import open_run
    from featgraph.render.text import format_table

    t = open_run(run).table(head, _circuit(circuit), distinct, positive, top, layer=layer)
    _out(format_table(post_view(t) if format == "md" else t, format))


@app.command(epilog="Example: featgraph demo --out exports/demo   (featgraph demo --family llama --out exports/demo-llama)")
def demo(
    out: Path = typer.Option(Path("exports/demo"), "--out", help="Directory for the demo's inputs and run (an earlier demo "
                             "there is replaced)."),
    force: ForceOpt = False,
    family: str = typer.Option("gemma2", "--family",
                               help="The tiny model's family: gemma2, llama, mistral, qwen2, qwen3, gemma4, gpt2 or gpt_neox."),
):
    """Run the whole pipeline offline on a tiny synthetic model (Gemma 2 unless --family) and SAEs (seconds)."""
    import shlex

    from featgraph.api.demo import run_demo

    # The hints name featgraph as it was run (.venv/bin/featgraph after scripts/setup, which puts nothing on PATH).
    invoked = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "featgraph" else "featgraph"
    for line in run_demo(out, force=force, family=family, prog=shlex.quote(invoked)):
        typer.echo(line)


@app.command(epilog="Example: featgraph load exports/layer13   (or --neo4j with NEO4J_URI/NEO4J_PASSWORD set)")
def load(
    run: RunArg,
    neo4j: bool = typer.Option(False, "--neo4j", help="Load into Neo4j (NEO4J_URI, NEO4J_USERNAME, NEO4J_PASSWORD, NEO4J_DATABASE)."),
    run_name: Optional[str] = typer.Option(None, help="Run id recorded on each edge [default: the run's unique id].",
                                           show_default=False),
    force: bool = typer.Option(False, "--force", help="Replace another run that Neo4j holds under the same --run-name."),
):
    """Load a run into the embedded graph store (default) or Neo4j; re-running replaces, never duplicates."""
    from featgraph.api.run import open_run

    with _progress() as progress:
        counts = open_run(run).load(neo4j=neo4j, name=run_name, progress=progress, force=force)
    where = "Neo4j" if neo4j else "the embedded store"
    typer.echo(f"loaded {counts['nodes']} features, {counts['QK']} QK and {counts['OV']} OV edges into {where}")


@app.command(epilog="Example: featgraph query exports/layer13 top_edges --param head=0 --param circuit=qk")
def query(
    run: Optional[Path] = typer.Argument(None, help="Run directory (its embedded store, or its edges in Neo4j).", show_default=False),
    cypher: Optional[str] = typer.Argument(None, help="Cypher text, or a library query name (see --list).", show_default=False),
    file: Optional[Path] = typer.Option(None, "--file", help="A .cypher file.", show_default=False),
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE, repeatable; typed by the query's header.", show_default=False,
                                    metavar="NAME=VALUE"),
    neo4j: bool = typer.Option(False, "--neo4j", help="Query Neo4j instead of the embedded store."),
    write: bool = typer.Option(False, "--write", help="Allow writes (Neo4j; read access mode otherwise)."),
    format: FormatOpt = "md",  # `table` is still read as md
    list_: bool = typer.Option(False, "--list", help="List the query library with descriptions and parameters."),
):
    """Run Cypher (literal, a library query, or --file) against a loaded run."""
    from featgraph.errors import BadInput

    if list_:
        from featgraph.graph.library import describe_library

        _out(describe_library())
        return
    if run is None:
        raise BadInput("give the run directory first: featgraph query RUN (CYPHER | NAME | --file F)")
    if file is not None and cypher is not None:
        raise BadInput("give either a query (text or name) or --file, not both")
    if file is None and cypher is None:
        raise BadInput("give a Cypher query, a library query name or --file FILE (see `featgraph query --list`)")
    from featgraph.api.run import open_run
    from featgraph.graph.library import resolve
    from featgraph.render.text import format_table

    params = {}
    for item in param:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise BadInput(f"--param takes NAME=VALUE, got {item!r}")
        params[k.strip()] = v
    target = file if file is not None else cypher
    literal = file is None and any(c.isspace() for c in cypher.strip())
    declared = set() if literal else {p.name for p in resolve(target).params}
    # the header types what it declares; literal Cypher and a file's undeclared parameters are typed by their look
    params = {k: v if k in declared else _guess(v) for k, v in params.items()}
    _out(format_table(open_run(run).query(target, neo4j=neo4j, write=write, **params), format))


def _guess(v: str):
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


@app.command("export", epilog="Example: featgraph export exports/layer13 --graphml layer13.graphml")
def export_cmd(
    run: RunOrEdges,
    graphml: Path = typer.Option(..., "--graphml", help="GraphML file to write (Gephi, Cytoscape).", show_default=False),
    force: ForceOpt = False,
):
    """Export a run's graph for other tools."""
    from featgraph.api.run import open_run

    typer.echo(f"wrote {open_run(run).export_graphml(graphml, force)}")


@app.command("export-neo4j", epilog="Example: featgraph export-neo4j exports/layer13 --out exports/layer13-import")
def export_neo4j(
    run: RunOrEdges,
    out: Path = typer.Option(..., "--out", help="Directory for the CSV files.", show_default=False),
    run_name: Optional[str] = typer.Option(None, help="Run id recorded on each edge [default: the run's unique id].",
                                           show_default=False),
    force: ForceOpt = False,
):
    """Write neo4j-admin bulk-import CSVs for graphs too large to load online."""
    import shlex

    from featgraph.api.run import open_run

    cmd = open_run(run).export_neo4j(out, run_name, force)
    schema = shlex.quote(str(Path(out).resolve() / "schema.cypher"))
    typer.echo(f"wrote {out}; import into an empty, stopped database with:\n  {shlex.join(cmd)}\n"
               f"then, with the server up, create featgraph's constraints and indexes:\n  cypher-shell -f {schema}")


@app.command("qk-trace", epilog="Example: featgraph qk-trace exports/layer13 dallas.json --node 15_4521_5 --head 0 "
             "--out dallas-qk.json   (then upload dallas-qk.json to Neuronpedia's graph viewer)")
def qk_trace_cmd(
    run: RunArg,
    graph: Annotated[Path, typer.Argument(help="Attribution graph (circuit-tracer / Neuronpedia graph JSON, .json or .json.gz).",
                                          show_default=False, metavar="GRAPH")],
    node: Annotated[str, typer.Option("--node", help="node_id of the graph's node at the query position that gets the "
                                      "results.", show_default=False)],
    head: HeadOpt,
    out: Path = typer.Option(..., "--out", help="Enriched graph to write (.json or .json.gz).", show_default=False),
    key_position: Optional[int] = typer.Option(None, "--key-position", help="Key position [default: the one the head "
                                               "weights most].", show_default=False),
    top: int = typer.Option(10, "--top", help="Contributors kept in each list."),
    token_ids: Optional[str] = typer.Option(None, "--token-ids", help="The prompt's token ids, comma-separated, when the "
                                            "run's tokenizer does not give the graph's tokens.", show_default=False),
    source_set: Optional[str] = typer.Option(None, "--source-set", help="Neuronpedia source set of the graph's transcoder "
                                             "features, as for import [default: the file's feature_details].", show_default=False),
    model_id: Optional[str] = typer.Option(None, "--model-id", help="Neuronpedia model id of the graph's features [default: "
                                           "metadata.scan].", show_default=False),
    layer: OneLayerOpt = None,
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    force: ForceOpt = False,
):
    """Write a head's QK attribution on a graph's prompt into the graph as Neuronpedia's qk_tracing_results."""
    from featgraph.api.attribution import qk_trace
    from featgraph.api.run import open_run

    r = qk_trace(open_run(run), graph, node, head, out, key_position=key_position, top=top,
                 token_ids=_ints(token_ids, "--token-ids"), model_id=model_id, source_set=source_set, layer=layer,
                 device=device, force=force)
    typer.echo(f"wrote {r.out}: node {r.node_id} carries layer {r.layer} head {r.head}'s QK attribution from position "
               f"{r.query_position} to {r.key_position} (logit {r.logit:.4g}; {r.pairs} pairs, {r.queries} query and "
               f"{r.keys} key features: {r.graph_nodes} of the graph's nodes, {r.qk_only_nodes} in qk_only_nodes); "
               f"{r.nodes} nodes and {r.links} links carried over")


@app.command(epilog="Example: featgraph tetrads exports/layer13 --head 7 --circuit ov --top 20")
def tetrads(
    run: RunOrEdges,
    head: Optional[int] = typer.Option(None, help="Only this head (of --layer on a multi-layer run).", show_default=False),
    circuit: Optional[str] = typer.Option(None, help="Only qk or ov.", show_default=False),
    layer: Optional[int] = typer.Option(None, "--layer", help="Only this layer.", show_default=False),
    top: int = typer.Option(20, help="Rows to print."),
    min_strength: float = typer.Option(0.0, help="Only tetrads whose weakest edge has |weight| >= S."),
    explain: bool = typer.Option(True, "--explain/--no-explain",
                                 help="Add source/destination cosines through the head (extracted runs; reloads the weights)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the tetrads found to this .parquet or .csv file.", show_default=False),
    force: ForceOpt = False,
    format: FormatOpt = "md",
):
    """Find mutual-exclusion tetrads (sign checkerboards). Unfiltered, the whole set is kept in the run as tetrads.parquet."""
    from featgraph.analyse.filters import check_top
    from featgraph.analyse.tetrads import summary
    from featgraph.api.run import open_run
    from featgraph.render.text import format_table, markdown

    check_top(top)
    r = open_run(run)
    t = r.tetrads(head, _circuit(circuit) if circuit else None, min_strength, explain, out, force, layer=layer)
    kept = out or (r.path / "tetrads.parquet" if (r.path and head is None and circuit is None and layer is None
                                                  and min_strength == 0) else None)
    head_line = f"{len(t)} tetrads ({int(t['like_to_like'].sum()) if len(t) else 0} like-to-like)" + \
        (f"; written to {kept}" if kept else "")
    typer.echo(head_line + "\n" + markdown(summary(t)), err=format != "md")
    _out(format_table(t.head(top), format))


@app.command(epilog="Example: featgraph positional --layer 13 --out exports/positional.png")
def positional(
    out: Path = typer.Option(..., "--out", help="PNG to write (a CSV with head, distance, score goes beside it).", show_default=False),
    model: ModelOpt = "google/gemma-2-2b",
    layer: LayerOpt = 13,
    sae_in: SaeInOpt = None,
    feature: list[str] = typer.Option([], "--feature", help="Also profile a feature against itself (ID) or a pair (QUERY_ID,KEY_ID).",
                                      show_default=False, metavar="ID[,ID]"),
    max_distance: int = typer.Option(8192, help="Largest token distance."),
    force: ForceOpt = False,
):
    """Rotary positional profile per head: (R(Δ) q)·k of the input SAE's b_dec over token distance."""
    from featgraph.api.run import positional as do_positional

    do_positional(model, layer, sae_in, feature, max_distance, out, force)
    typer.echo(f"wrote {out} and {out.with_suffix('.csv')}")


@app.command(epilog="Example: featgraph correlation exports/layer13 --out exports/layer13-correlation.png")
def correlation(
    run: RunArg,
    out: Path = typer.Option(..., "--out", help="PNG to write (CSV beside it).", show_default=False),
    heads: Optional[str] = typer.Option(None, help="Comma-separated heads [default: all].", show_default=False),
    layer: OneLayerOpt = None,
    force: ForceOpt = False,
):
    """QK–OV sender correlation: each key/value feature's mean QK as a key against its mean |OV|, per head."""
    from featgraph.api.run import open_run

    df = open_run(run).correlation(_ints(heads, "--heads"), out, force, layer=layer)
    for h, r in df.attrs["pearson_r"].items():
        typer.echo(f"head {h}: r = {r:.4f}")
    typer.echo(f"wrote {out} and {out.with_suffix('.csv')}")


@app.command(epilog="Examples:\n  featgraph viz exports/layer13 --head 7 --circuit ov --top 60 --out head7.html\n"
             "  featgraph viz exports/layer13 --circuit qk --match numerical --hops 1 --out numerical.html")
def viz(
    run: RunOrEdges,
    circuit: CircuitOpt,
    out: Path = typer.Option(..., "--out", help="HTML page to write (works offline).", show_default=False),
    head: Optional[int] = typer.Option(None, help="Attention head [default: all heads].", show_default=False),
    layer: Optional[int] = typer.Option(None, "--layer", help="Layer of a multi-layer run [default: all layers; "
                                        "needed with --head].", show_default=False),
    top: int = typer.Option(100, help="Strongest edges to draw (at most 1000)."),
    feature: Optional[str] = typer.Option(None, help="Centre on this feature id.", show_default=False),
    match: Optional[str] = typer.Option(None, help="Centre on the features whose label matches this text.", show_default=False),
    hops: int = typer.Option(1, help="With --feature/--match: neighbourhood radius."),
    force: ForceOpt = False,
):
    """An interactive page of a circuit: nodes `index: label`, arrows source → destination, hover and click for details."""
    from featgraph.api.run import open_run

    typer.echo(f"wrote {open_run(run).viz(head, _circuit(circuit), out, top, feature, hops, match, force, layer=layer)}")


@app.command(epilog='Example: featgraph search exports/layer13 "numerical patterns" --limit 5')
def search(
    run: RunOrEdges,
    text: str = typer.Argument(..., help="Words to find in feature labels (case-insensitive).", show_default=False),
    limit: int = typer.Option(10, help="Features to show."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Only this layer's heads [default: all].", show_default=False),
    format: FormatOpt = "md",
):
    """Find features by what their labels say, each with its strongest QK and OV edges per (layer, head)."""
    from featgraph.api.run import open_run
    from featgraph.render.text import format_table

    r = open_run(run)
    found = r.search(text, limit, layer=layer)
    if found.empty:
        unlabelled = not r.features["description"].fillna("").astype(str).str.strip().any()
        typer.echo(f"no feature matches {text!r}" + (": this run has no labels (featgraph labels RUN adds them)" if unlabelled
                                                     else ""), err=True)
    _out(format_table(found, format))


VALIDATE_COLUMNS = ["head", "circuit", "pairs", "edges_active", "rho_selected", "rho_active_d0", "rho_active", "rho_active_bias",
                    "r2_selected", "r2_active_d0", "r2_active", "r2_active_bias", "r2_exact"]


@app.command(epilog="Example: featgraph validate exports/layer13 --text-file prompts.txt --max-tokens 128 --out exports/layer13-validation.png")
def validate(
    run: RunArg,
    prompt: list[str] = typer.Option([], "--prompt", help="Prompt text (repeatable).", show_default=False, metavar="TEXT"),
    text_file: Optional[Path] = typer.Option(None, "--text-file", help="One prompt per line, or .jsonl with a `text` field.",
                                             show_default=False),
    max_tokens: Optional[int] = typer.Option(None, help="Keep each prompt's first N tokens.", show_default=False),
    heads: Optional[str] = typer.Option(None, help="Comma-separated heads [default: the run's; only then is validation.parquet kept].",
                                        show_default=False),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    out: Optional[Path] = typer.Option(None, "--out", help="Figure to write (.png).", show_default=False),
    force: ForceOpt = False,
    format: FormatOpt = "md",
):
    """Do the weight-based edges predict the model's real attention? Spearman ρ and variance shares per head on prompts."""
    from featgraph.api.run import open_run
    from featgraph.render.text import format_table

    r = open_run(run)
    with _progress() as progress:
        df = r.validate(prompts=prompt, text_file=text_file, heads=_ints(heads, "--heads"), max_tokens=max_tokens,
                        device=device, out=out, force=force, progress=progress)
    kept = [p for p in (out, r.path / "validation.parquet" if heads is None and r.path else None) if p is not None]
    typer.echo(f"{int(df['prompts'].max())} prompts, {int(df['tokens'].max())} tokens" +
               (f"; wrote {', '.join(map(str, kept))}" if kept else ""), err=format != "md")
    _out(format_table(df[VALIDATE_COLUMNS], format))


@app.command(epilog="Example: featgraph report exports/layer13 --out exports/layer13-report")
def report(
    run: RunOrEdges,
    out: Path = typer.Option(..., "--out", help="Directory for index.html, per-head pages and plots.", show_default=False),
    top: int = typer.Option(15, help="Rows per table."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Positional and correlation plots (reload the weights)."),
    force: ForceOpt = False,
):
    """One HTML page per run: statistics, tables, tetrads, plots and links to per-head graphs."""
    from featgraph.api.run import open_run

    with _progress() as progress:
        index = open_run(run).report(out, top, plots, force, progress)
    typer.echo(f"wrote {index}")


@app.command(epilog="Example: featgraph serve exports/layer13   (open the URL it prints; Ctrl-C stops it)")
def serve(
    run: RunArg,
    neo4j: bool = typer.Option(False, "--neo4j", help="Read the run from Neo4j (NEO4J_* environment) instead of its embedded store."),
    port: int = typer.Option(8765, "--port", help="TCP port (0: any free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but the loopback lets others read the graph."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds a query may run before it is stopped."),
):
    """A local, read-only web app over the run's store: find features, expand them, layouts, paths, Cypher, exports."""
    from featgraph.api.run import open_run
    from featgraph.server.server import start

    server = start(open_run(run), neo4j=neo4j, host=host, port=port, timeout=timeout)
    typer.echo(f"featgraph explorer at {server.url}  ({server.explorer.where}; Ctrl-C stops it)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)


@app.command("sae", epilog="Examples: featgraph sae gpt2-small-res-jb/blocks.8.hook_resid_pre llama_scope_lxr_8x/l15r_8x --json; "
             "featgraph sae ~/.cache/huggingface/hub/models--google--gemma-scope-2b-pt-res/snapshots/*/layer_12/width_16k/average_l0_82")
def sae_cmd(
    refs: list[str] = typer.Argument(..., show_default=False, metavar="REF", hidden=True),  # described in the docstring
    json_lines: bool = typer.Option(False, "--json", help="One JSON object per line."),
):
    """What featgraph would use for each SAE REF (a SAELens release/sae_id, a Hub path, an HF cache path, or a local
    SAE file or folder), without downloading anything: release and id, repo and files, format, the hook point it
    reads (site, layer, which layer's input or OV output it is), d_sae, and its Neuronpedia id or why there is
    none (from SAELens' registry)."""
    import json

    from featgraph.api.saes import format_info, sae_info
    from featgraph.errors import BadInput

    bad = []
    for ref in refs:  # each reference answered on its own: one bad one does not hide the others
        try:
            d = sae_info(ref)[0]
        except BadInput as e:
            if len(refs) == 1:
                raise
            typer.echo(f"error: {e}", err=True)
            bad.append(ref)
            continue
        _out((json.dumps(d, default=str) if json_lines else format_info(d)) + "\n")
    if bad:
        raise BadInput(f"{len(bad)} of {len(refs)} SAE references could not be described: {', '.join(map(repr, bad))} "
                       "(each error above)")


def _examples_kept_whole() -> None:
    """Help epilogs are examples to copy: click must not rewrap them (it broke `--max-tokens` across lines). A
    paragraph starting with a \\b line is printed as written (click's documented escape)."""
    for info in app.registered_commands:
        if info.epilog:
            info.epilog = "\n\n".join(p if p.startswith("\b") else "\b\n" + p for p in info.epilog.split("\n\n"))


_examples_kept_whole()


def main() -> None:  # console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

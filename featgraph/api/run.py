"""`Run`: one computed graph — its edges, features and manifest — and everything you can do with it.

This is the Python API's core object (the CLI calls one method per command):

    import featgraph as fg
    run = fg.open_run("exports/layer13")
    run.table(head=0, circuit="qk", distinct=True, positive=True, top=20)
    run.query("top_edges", head=7)
    run.tetrads(head=0, circuit="ov")

Results are pandas DataFrames with feature labels beside ids; nothing here
prints. Methods that write take an output path and write it whole or not at all.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from featgraph.analyse.filters import circuit_param
from featgraph.core.progress import ProgressFactory, no_progress
from featgraph.core.schema import parse_feature_id
from featgraph.errors import BadInput, BadValue, FeatgraphError, FeatgraphWarning, MissingValue
from featgraph.runs import rundir
from featgraph.runs.files import check_output_file, write_frame
from featgraph.runs.manifest import Manifest

if TYPE_CHECKING:
    from featgraph.graph.rows import GraphFiles

# Library queries that answer only across layers, and why (an empty answer on one layer says so).
_ACROSS_LAYERS = {
    "cross_layer_paths": "it follows a path from an OV edge of layer L to an edge of layer L + 1",
    "recurring_hubs": "it lists features that are hubs of at least min_layers layers",
}


def _strings(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as pandas' `string` dtype, so a missing description is <NA> in every result (as in `edges`)."""
    for col in df.columns:
        s = df[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            present = s.dropna()
            if len(present) == 0 or present.map(lambda v: isinstance(v, str)).all():
                df[col] = s.astype("string")
    return df


def _required_circuit(circuit: str) -> str:
    c = circuit_param(circuit)
    if c is None:
        raise BadValue("circuit", circuit, "must be qk or ov")
    return c




@dataclass(frozen=True, eq=False, repr=False)
class Run:
    """A run directory (or an edge file, `path` None) in memory.

    edge_table: edges.parquet as stored; features: features.parquet (one row per feature, with
    `description`); manifest: what was computed and how. `edges` adds the labels beside the ids.
    """

    path: Path | None
    manifest: Manifest
    edge_table: pd.DataFrame
    features: pd.DataFrame

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> Run:
        """Read a run directory made by `extract`/`import`, or a bare edge table (.parquet/.csv)."""
        t = rundir.read_tables(Path(path), verify=verify)
        return cls(t.path, t.manifest, t.edges, t.features)

    def __repr__(self) -> str:
        """One short line (a notebook shows this, not the manifest and both tables)."""
        where = str(self.path) if self.path is not None else self.name
        layers = _ranges(self.layers)
        return (f"<Run {where!r}: layer{'s' if len(self.layers) > 1 else ''} {layers}, {len(self.heads)} heads, "
                f"{len(self.edge_table):,} edges, {len(self.features):,} features>")

    @property
    def name(self) -> str:
        src = (self.manifest.source or {}).get("edge_file")
        return self.path.name if self.path is not None else (Path(src).stem if src else "edges")

    @property
    def run_id(self) -> str:
        """The run's identity in a shared store (unique per run made; see Manifest.run_id)."""
        return self.manifest.run_id or self.name

    @property
    def heads(self) -> list[int]:
        return sorted(int(h) for h in self.edge_table["head"].unique())

    @property
    def layers(self) -> list[int]:
        return sorted(int(x) for x in self.edge_table["layer"].unique())

    @property
    def graphs(self) -> list[GraphFiles]:
        """The attribution graphs imported into this run (`featgraph import GRAPH.json --out RUN`), by id."""
        from featgraph.graph.rows import GraphFiles
        from featgraph.runs.graphs import list_graphs

        return [GraphFiles(g.id, g.info, g.nodes_path, g.links_path) for g in list_graphs(self.path)]

    @property
    def is_atlas(self) -> bool:
        """True for an atlas (`featgraph atlas`): one graph over many layers, each layer's run in layers/L{layer}."""
        return self.manifest.command == "atlas"

    def _layer(self, layer: int | None, needed: bool = True) -> int | None:
        """The one layer a call is about: `layer` checked against the run's, else the run's only layer; on a
        multi-layer run a call that `needed` one and got none is an error naming the layers present (None if not needed)."""
        present = self.layers
        if layer is not None:
            if int(layer) not in present:
                raise BadValue("layer", layer, f"has no edges in this run: layers present are {_ranges(present)}",
                               value_first=True)
            return int(layer)
        if len(present) == 1:
            return present[0]
        if needed:
            raise MissingValue("layer", f"this run holds layers {_ranges(present)}: pick one")
        return None

    def _layer_manifests(self) -> list[Manifest]:
        """An atlas' layers' manifests (without reading their tables)."""
        parts = (self.manifest.extra.get("atlas") or {}).get("parts") or {}
        return [rundir.read_manifest(self.path / p["path"]) for p in parts.values()] if self.path is not None else []

    def layer_run(self, layer: int | None = None) -> Run:
        """The run of one layer, with the manifest that records its model, SAEs and conventions: an atlas' part
        (layers/L{layer}), or this run itself when it holds that one layer (then `layer` may be left out)."""
        layer = cast(int, self._layer(layer))  # a needed layer is never None
        if not self.is_atlas:
            if len(self.layers) > 1:
                raise BadInput(f"this run holds layers {_ranges(self.layers)} but no run per layer (only an atlas has them)")
            return self
        part = ((self.manifest.extra.get("atlas") or {}).get("parts") or {}).get(str(layer))
        if self.path is None or not part:
            raise FeatgraphError(f"the atlas' manifest does not name the run of layer {layer}: continue the atlas with "
                                 "`featgraph atlas` to rebuild it")
        return Run.open(self.path / part["path"], verify=False)

    @cached_property
    def edges(self) -> pd.DataFrame:
        """The edge table with `src_description` and `dst_description` beside the ids."""
        desc = self.features.set_index("id")["description"]
        e = self.edge_table.copy()
        e["src_description"] = e["src"].map(desc).astype("string")
        e["dst_description"] = e["dst"].map(desc).astype("string")
        return e

    def _directory(self, what: str) -> Path:
        if self.path is None:
            raise BadInput(f"{what} needs a run directory: make one with `featgraph import EDGE_FILE --out DIR`")
        return self.path

    # ---------------------------------------------------------------- tables and analyses

    def table(self, head: int, circuit: str, distinct: bool = False, positive: bool = False,
              top: int | None = 30, layer: int | None = None) -> pd.DataFrame:
        """The post's table of one head and circuit: rank, weight and the two ends as `index: label`.

        `layer` may be left out when the run holds one layer."""
        from featgraph.analyse.tables import head_table

        circ = _required_circuit(circuit)
        return head_table(self.edge_table, self.features, head, circ, distinct, positive, top, layer=self._layer(layer))

    def tetrads(self, head: int | None = None, circuit: str | None = None, min_strength: float = 0.0,
                explain: bool = True, out: str | Path | None = None, force: bool = False,
                layer: int | None = None) -> pd.DataFrame:
        """Mutual-exclusion tetrads per (layer, head, circuit), strongest first, with labels and (explain,
        extracted runs and atlases) cosines.

        Writes nothing unless asked: `out` a .parquet or .csv file. Called without filters on a
        run directory, the whole set is also kept in the run as tetrads.parquet (what `report` shows).
        On a multi-layer run, `head` needs `layer`.
        """
        from featgraph.analyse import tetrads as tt
        from featgraph.analyse.filters import head_circuit

        if out is not None:
            out = check_output_file(Path(out), (".parquet", ".csv"), force)
        one = self._layer(layer, needed=head is not None)
        t = tt.find_tetrads(head_circuit(self.edge_table, head, circuit_param(circuit), layer=one), min_strength)
        if explain and len(t) and self._has_weights:
            try:
                t = self._cosines(t)
            except FeatgraphError as e:
                warnings.warn(f"cosines not computed: {e}", FeatgraphWarning, stacklevel=2)
        t = self._describe(t, ("src_a", "src_b", "dst_x", "dst_y"))
        if out is not None:
            write_frame(t, out)
        elif head is None and circuit is None and layer is None and min_strength == 0 and self.path is not None:
            write_frame(t, self.path / rundir.TETRADS)
        return t

    @property
    def _has_weights(self) -> bool:
        """Whether the model and SAEs can be reloaded: an extracted run, or an atlas (through its layers' runs)."""
        return self.manifest.has_weights or (self.is_atlas and self.path is not None)

    def _cosines(self, t: pd.DataFrame) -> pd.DataFrame:
        """Tetrad cosines (analyse.tetrads.cosines), each layer's from the weights its run records."""
        from featgraph.analyse import tetrads as tt
        from featgraph.api import reload

        parts = []
        for layer, g in t.groupby("layer", sort=False):
            pairs = set(zip(g["head"].astype(int), g["circuit"].astype(str)))
            parts.append(tt.cosines(g, reload.run_factors(self.layer_run(int(layer)).manifest, pairs)).set_index(g.index))
        return pd.concat(parts).loc[t.index]

    def _describe(self, df: pd.DataFrame, id_columns: Sequence[str]) -> pd.DataFrame:
        """Add `<column>_description` beside each feature-id column."""
        desc = self.features.set_index("id")["description"]
        out = df.copy()
        for col in id_columns:
            out.insert(out.columns.get_loc(col) + 1, f"{col}_description", out[col].map(desc).astype("string"))
        return out

    def correlation(self, heads: Sequence[int] | None = None, out: str | Path | None = None,
                    force: bool = False, layer: int | None = None) -> pd.DataFrame:
        """QK–OV sender correlation per head of one layer (reloads the layer's model and SAEs).

        Columns head, feature_index, mean_qk_as_key, mean_abs_ov; `.attrs["pearson_r"]` maps head -> r.
        With `out` (.png), writes the figure and the table as CSV beside it. On an atlas, name the `layer`.
        """
        import numpy as np

        from featgraph.api import reload

        manifest = self.layer_run(layer).manifest if self.is_atlas else self.manifest
        if out is not None:
            out = check_output_file(Path(out), (".png",), force)
            check_output_file(out.with_suffix(".csv"), (".csv",), force)
        df = reload.correlation_frame(manifest, tuple(heads) if heads is not None else None)
        r = {int(h): float(np.corrcoef(g["mean_qk_as_key"], g["mean_abs_ov"])[0, 1]) for h, g in df.groupby("head")}
        df.attrs["pearson_r"] = r
        if out is not None:
            from featgraph.render.plots import correlation_plot

            stats = {int(h): (g["mean_qk_as_key"].to_numpy(), g["mean_abs_ov"].to_numpy()) for h, g in df.groupby("head")}
            write_frame(df, out.with_suffix(".csv"))
            correlation_plot(stats, out, f"layer {manifest.layer}: QK–OV sender correlation")
        return df

    def validate(self, prompts: Sequence[str] = (), text_file: str | Path | None = None,
                 token_ids: Sequence[Sequence[int]] | None = None, heads: Sequence[int] | None = None,
                 max_tokens: int | None = None, device: str = "auto", out: str | Path | None = None,
                 force: bool = False, progress: ProgressFactory | None = None) -> pd.DataFrame:
        """Do the run's edges predict the model's real attention on prompts? (runs the model in transformers)

        Per (head, circuit): Spearman ρ and variance share of (i) the run's edges, (ii) all active feature pairs
        at the run's offset, (iii) with the true distance, (iii) + bias terms, and the exact sum (docs/maths.md).
        `prompts` are texts (tokenised by the model's tokenizer), `text_file` one per line or .jsonl `text`
        fields, `token_ids` lists of ids. `.attrs["edges"]` holds each edge's usage. Over all heads of a run
        directory the results are kept in the run as validation.parquet; `out` (.png) writes the figure.
        """
        from featgraph.api import validate

        if self.is_atlas:
            raise BadInput(f"validate runs one layer's run: validate {self.path}/layers/L{{layer}} (layers "
                           f"{_ranges(self.layers)}), e.g. featgraph validate {self.path}/layers/L{self.layers[0]}")
        return validate.validate(self, prompts, text_file, token_ids, heads, max_tokens, device, out, force, progress)

    # ---------------------------------------------------------------- graphs

    def to_networkx(self, head: int | None = None, circuit: str | None = None, layer: int | None = None):
        """A networkx MultiDiGraph of the run (or one layer / head / circuit): nodes are feature ids, shared
        across layers. On a multi-layer run, `head` needs `layer`."""
        from featgraph.analyse.filters import head_circuit
        from featgraph.graph.nxgraph import to_networkx

        one = self._layer(layer, needed=head is not None)
        e = head_circuit(self.edge_table, head, circuit_param(circuit), layer=one)
        ids = set(e["src"]) | set(e["dst"])
        whole = head is None and circuit is None and layer is None  # the whole run holds its attribution graphs too
        return to_networkx(e, self.features[self.features["id"].isin(ids)], self.run_id, self.graphs if whole else ())

    @property
    def neo4j_run(self) -> str:
        """The name this run was last loaded into Neo4j under (`load(name=…)`, `--run-name`), else its run id."""
        loaded = (self.manifest.stores or {}).get("neo4j") or {}
        return str(loaded.get("run") or self.run_id)

    def load(self, neo4j: bool = False, name: str | None = None, progress: ProgressFactory | None = None,
             force: bool = False) -> dict[str, int]:
        """Load into the run's embedded store (default) or Neo4j (NEO4J_* environment); re-loading replaces.

        `name` overrides the run id recorded on each edge (the run's unique id by default). A Neo4j that holds
        another run under that name is refused (BadInput) unless `force`, which replaces it; this run (or a
        copy of it) loaded again under its name is a re-load.
        """
        run = name or self.run_id
        if force and not neo4j:
            raise BadInput("force applies to Neo4j (--neo4j): the embedded store holds this run alone and every load "
                           "replaces it")
        if neo4j:
            from featgraph.graph.neo4j_store import Neo4jSettings, Neo4jStore, redact

            advance = (progress or no_progress)("Neo4j load", len(self.edge_table))
            settings = Neo4jSettings.from_env()
            with Neo4jStore(settings) as store:
                counts = store.load(self.edge_table, self.features, run, advance, graphs=self.graphs, source=self.run_id,
                                    force=force)
            if self.path is not None:  # so `label` can say this copy goes stale
                rundir.record_store(self.path, rundir.read_manifest(self.path), "neo4j", {
                    "uri": redact(settings.uri), "database": settings.database, "run": run, "loaded": rundir.now()})
            return counts
        from featgraph.graph import embedded

        return embedded.load(self._directory("the embedded store"), self.edge_table, self.features, run, self.graphs)

    def query(self, query: str | Path, *, neo4j: bool = False, write: bool = False, open_store: Any = None,
              **params: Any) -> pd.DataFrame:
        """Run a library query by name (`top_edges`), a .cypher file, or literal Cypher, with `params`.

        `open_store`: a store already open for this run (an entered EmbeddedStore, or Neo4jStore with `neo4j`) to
        run on instead of opening one per call (the explorer server keeps one open).

        Library queries type their parameters from the file's header (strings are cast) and answer for
        this run on a shared Neo4j; literal Cypher gets `params` as given, and so does a file of your own for the ones its header does not declare.
        """
        from featgraph.graph import library

        text = str(query)
        is_named = isinstance(query, Path) or (text.strip() and not any(c.isspace() for c in text.strip()))
        if is_named:
            q = library.resolve(query)
            if "run" not in params and any(p.name == "run" for p in q.params) and neo4j:
                params["run"] = self.neo4j_run  # a shared Neo4j holds many runs: answer for this one
            bound = self._check_params(q.bind(params))
            cypher = q.text_for("neo4j" if neo4j else "embedded")
        elif text.strip():
            cypher, bound = text, dict(params)
        else:
            raise BadInput("give a Cypher query, a library query name or a .cypher file (see `featgraph query --list`)")
        if neo4j:
            from featgraph.graph.neo4j_store import Neo4jSettings, Neo4jStore

            # A read answers for a run (the `run` parameter, else this one) only if its load finished;
            # writes are left free, e.g. to repair a store.
            check = None if write else (bound["run"] if isinstance(bound.get("run"), str) else self.neo4j_run)
            graph = None if write or not is_named else bound.get("graph")
            graph = graph if isinstance(graph, str) else None
            if open_store is not None:
                result = open_store.query(cypher, bound, write=write, run=check, graph=graph)
            else:
                with Neo4jStore(Neo4jSettings.from_env()) as store:
                    result = store.query(cypher, bound, write=write, run=check, graph=graph)
        else:
            if write:
                raise BadInput("write applies to Neo4j; the embedded store is rebuilt by `featgraph load`")
            from featgraph.graph.embedded import EmbeddedStore

            if open_store is not None:
                result = open_store.query(cypher, bound)
            else:
                with EmbeddedStore(self._directory("the embedded store")) as store:
                    result = store.query(cypher, bound)
        if is_named:
            result = q.in_part_order(result)
        if is_named and result.empty and len(self.layers) == 1:
            why = _ACROSS_LAYERS.get(q.name)
            if why is not None and (q.name != "recurring_hubs" or int(bound.get("min_layers", 2)) > 1):
                warnings.warn(f"{q.name} found nothing: {why}, and this run holds one layer ({self.layers[0]}); "
                              "an atlas (featgraph atlas) holds several", FeatgraphWarning, stacklevel=2)
        return _strings(result)

    def _check_params(self, bound: dict[str, Any]) -> dict[str, Any]:
        """Library-query parameters in the run's terms: circuit names normalised, layers, heads and features checked.

        A `layer` beside a `head` names the head's layer: -1 means the run's only layer (an error naming the
        layers present when it holds several). Elsewhere -1 means every layer.
        """
        from featgraph.graph.rows import HUB_RANKS

        out = dict(bound)
        if "circuit" in out:
            out["circuit"] = circuit_param(out["circuit"])
        if "layer" in out and (out["layer"] != -1 or "head" in out):
            out["layer"] = self._layer(None if out["layer"] == -1 else out["layer"])
        if "head" in out:
            e = self.edge_table
            heads = sorted(int(h) for h in e.loc[e["layer"] == out["layer"], "head"].unique()) if "layer" in out else self.heads
            if out["head"] not in heads:
                where = f" of layer {out['layer']}" if "layer" in out and len(self.layers) > 1 else ""
                raise BadValue("head", out["head"], f"has no edges in this run: heads present{where} are {', '.join(map(str, heads))}")
        if "top" in out and not 1 <= out["top"] <= HUB_RANKS:
            raise BadValue("top", out["top"], f"must be 1 to {HUB_RANKS} (a load keeps each layer's {HUB_RANKS} best-connected features)")
        for key in ("limit", "min_heads", "min_layers"):
            if isinstance(out.get(key), int) and out[key] < 0:
                raise BadValue(key, out[key], "must be 0 or more")
        if isinstance(out.get("graph"), str) and self.path is not None:
            ids = [g.id for g in self.graphs]
            slugs = [g.id for g in self.graphs if g.info.get("slug") == out["graph"]]
            if out["graph"] not in ids and len(slugs) == 1:  # a graph's slug names it while no other graph has that slug
                out["graph"] = slugs[0]
            if out["graph"] not in ids:
                have = f"its graphs are {', '.join(ids)}" if ids else "it has none: add one with `featgraph import GRAPH.json --out RUN`"
                raise BadValue("graph", out["graph"], f"is not an attribution graph of this run: {have}", value_first=True)
        for key in ("feature", "other", "src", "dst", "query", "key"):
            if isinstance(out.get(key), str):
                fid = out[key]
                try:
                    parse_feature_id(fid)
                except ValueError:
                    raise BadValue(key, fid, "must be a feature id MODEL/SOURCE/INDEX, e.g. "
                                   f"{self.features['id'].iloc[0] if len(self.features) else 'gemma-2-2b/12-gemmascope-res-16k/8517'}") from None
        return out

    # ---------------------------------------------------------------- labels

    def label(self, sources: Sequence[str | Path] = (), prefer: Sequence[str] = (),
              label_table: pd.DataFrame | None = None, progress: ProgressFactory | None = None) -> Run:
        """Attach Neuronpedia descriptions (local files, or the public export by default); returns the updated run.

        A source matching none of the run's features is an error that changes nothing; features a source
        does not cover keep their earlier label. `label_table`: labels already read, columns model, sae,
        feature_index, description, explainer (load.neuronpedia.LABEL_COLUMNS). An embedded store already built is rebuilt with the new labels.
        """
        from featgraph.core import annotate
        from featgraph.load import neuronpedia

        directory = self._directory("labels")
        if label_table is None and sources:
            label_table = neuronpedia.read_labels([Path(s) for s in sources])
            used = [str(Path(s).resolve()) for s in sources]
        elif label_table is None:
            pairs = sorted({(parse_feature_id(f)[0], s) for f, s in zip(self.features["id"], self.features["sae"])})
            # An SAE featgraph named after its files (a Gemma Scope 2 SAE Neuronpedia does not host) has nothing to
            # download; asking would fail the other SAE's labels too.
            manifests = self._layer_manifests() if self.is_atlas else [self.manifest]
            unhosted = {str(x["fallback_id"]) for m in manifests for x in (m.sae_in, m.sae_out)
                        if x and x.get("fallback_id") and x.get("fallback_id") == x.get("neuronpedia_id")}
            if pairs and all(s in unhosted for _, s in pairs):
                raise FeatgraphError(f"Neuronpedia hosts none of this run's SAEs ({', '.join(sorted(unhosted))} are named by "
                                     "featgraph, docs/ids.md): attach labels from files with sources= (--source)")
            pairs = [(m, s) for m, s in pairs if s not in unhosted]
            advance = (progress or no_progress)("Neuronpedia labels", None)
            dirs = [neuronpedia.download(m, s, progress=lambda done, total: advance(1)) for m, s in pairs]
            label_table = neuronpedia.read_labels(dirs)
            used = [f"neuronpedia-datasets:v1/{m}/{s}/explanations" for m, s in pairs]
        else:
            used = [str(Path(s).resolve()) for s in sources] or ["<table>"]
        chosen = neuronpedia.choose(label_table, tuple(prefer))
        feats, counts = annotate.merge(self.features, chosen, where=f"labels from {', '.join(used)}")
        record = {"sources": used, "rule": annotate.RULE, "prefer": list(prefer)}
        if self.is_atlas:  # labelled in each layer's run, then combined again: a later rebuild keeps them
            from featgraph.runs import atlasdir

            manifest = atlasdir.relabel(directory, chosen, record, counts.__dict__)
        else:
            manifest = rundir.update_features(directory, rundir.read_manifest(directory), feats, record | counts.__dict__)
        run = Run(directory, manifest, self.edge_table, rundir.read_tables(directory, verify=False).features)
        from featgraph.runs.files import DB_NAME

        if (directory / DB_NAME).exists():
            run.load()
        neo = (manifest.stores or {}).get("neo4j")
        if neo:
            warnings.warn(f"the copy of this run loaded into Neo4j at {neo.get('uri')} on {neo.get('loaded')} still has the old "
                          f"labels: refresh it with `featgraph load {directory} --neo4j`", FeatgraphWarning, stacklevel=2)
        return run

    # ---------------------------------------------------------------- files for other tools and people

    def export_graphml(self, out: str | Path, force: bool = False) -> Path:
        """GraphML for Gephi / Cytoscape / yEd."""
        from featgraph.graph.nxgraph import write_graphml

        out = check_output_file(Path(out), (".graphml", ".xml"), force, flag="--graphml")
        return write_graphml(self.to_networkx(), out)

    def export_neo4j(self, out: str | Path, name: str | None = None, force: bool = False) -> list[str]:
        """CSV files for `neo4j-admin database import full`; returns the command to run."""
        from featgraph.graph.neo4j_store import export_admin_csv

        return export_admin_csv(self.edge_table, self.features, name or self.run_id, Path(out), force, self.graphs,
                                source=self.run_id)

    def viz(self, head: int | None = None, circuit: str | None = None, out: str | Path | None = None, top: int = 100,
            feature: str | Sequence[str] | None = None, hops: int = 1, match: str | None = None, force: bool = False,
            layer: int | None = None) -> Path:
        """An interactive offline page of one head's circuit (None: all heads), its `top` strongest edges —
        or the neighbourhood (`hops`) of `feature` (an id or several), or of the features whose label
        matches `match` (the best 10 by `search`'s ranking). On a multi-layer run, `head` needs `layer`;
        without either the page spans every layer (features are shared nodes, so paths cross layers)."""
        from featgraph.analyse.filters import check_top, head_circuit, subgraph
        from featgraph.render.viz import build_html, check_size, write_page

        if circuit is None:
            raise MissingValue("circuit", "qk or ov")
        if out is None:
            raise MissingValue("out", "the .html page to write")
        check_top(top)
        check_size(top)
        out = check_output_file(Path(out), (".html", ".htm"), force)
        circ = _required_circuit(circuit)
        if feature is not None and match is not None:
            raise BadInput("give feature or match, not both")
        one = self._layer(layer, needed=head is not None)
        where = f"head {head} {circ}" if head is not None else f"{circ}, all heads"
        if len(self.layers) > 1:
            where = (f"layer {one} " if one is not None else "all layers, ") + where
        around = None
        if match is not None:
            e = head_circuit(self.edge_table, head, circ, layer=one)
            present = self.features[self.features["id"].isin(set(e["src"]) | set(e["dst"]))]
            found = self._matches(present, match, where)
            feature, around = list(found["id"]), f"features matching {match!r}"
        elif feature is not None:
            around = feature if isinstance(feature, str) else ", ".join(feature)
        e = subgraph(self.edge_table, head, circ, top, feature, hops, layer=one)
        title = where + (f" around {around} ({hops} hop{'s' if hops > 1 else ''}), {len(e)} edges" if around
                         else f", top {len(e)} edges")
        centres = [feature] if isinstance(feature, str) else list(feature or ())
        return write_page(build_html(e, self.features, title, centres), out)

    def serve(self, neo4j: bool = False, host: str = "127.0.0.1", port: int = 8765, timeout: float = 10.0,
              block: bool = True):
        """The live explorer over this run's store (`featgraph serve`): http://HOST:PORT/ until interrupted, or, with
        `block=False`, in a background thread (the returned server has `url` and `close()`). Binds the loopback
        unless `host` says otherwise; read-only; `timeout` seconds per query."""
        # The one upward import of the API layer (tests/test_layering.py allows it by name): `serve` is the app,
        # Run.serve its API twin; serve.server never imports this module, so there is no cycle.
        from featgraph.server.server import start

        server = start(self, neo4j=neo4j, host=host, port=port, timeout=timeout)
        if not block:
            return server.start_thread()
        server.serve_forever()
        return server

    def show(self, head: int | None = None, circuit: str = "qk", top: int = 100, feature: str | Sequence[str] | None = None,
             hops: int = 1, match: str | None = None, layer: int | None = None, query: str | None = None,
             params: dict[str, Any] | None = None, layout: str | None = None, height: int = 640):
        """Draw a graph in a notebook, without a server: one head's circuit (its `top` strongest edges, in two
        columns: keys -> queries or values -> outputs), a neighbourhood (`feature` or `match`, `hops`, as `viz`
        selects them), or the edges a `query` result names (a library query name or Cypher, with `params`, run
        on the embedded store). Returns a view Jupyter shows inline (the explorer's page, every asset inlined,
        in an iframe); `.save(path)` writes it. `layout`: columns, layers (a row per SAE layer) or force."""
        from featgraph.analyse.filters import check_top, head_circuit, subgraph
        from featgraph.render.explorer import MAX_STATIC_EDGES, View, fixed_columns, graph_payload, page, result_edges

        if layout is not None and layout not in ("columns", "layers", "force"):
            raise BadValue("layout", layout, "must be columns, layers or force")
        check_top(top)
        if top > MAX_STATIC_EDGES:
            raise BadValue("top", top, f"asks for more edges than a notebook page draws at once ({MAX_STATIC_EDGES:,}): lower it, "
                           "or use `featgraph serve`")
        centres: list[str] = []
        if query is not None:
            from featgraph.graph import library

            df = self.query(query, **(params or {}))
            named = str(query).strip()
            if not any(c.isspace() for c in named) and named in library.library():
                given = {p.name: p.default for p in library.library()[named].params} | dict(params or {})
                df = fixed_columns(df, given, self.layers)
            e = result_edges(df)
            if e is None or e.empty:
                raise BadInput(f"the query's {len(df)} rows name no edge (it needs src/dst-like columns with weight, layer and head) "
                               "to draw: show its table instead")
            e = e.head(MAX_STATIC_EDGES)
            table = self.edge_table
            keys = ["src", "dst", "layer", "head", "circuit"]
            extra = [c for c in ("rank", "z") if c in table.columns]
            e = e.astype({"layer": "int64", "head": "int64"}).merge(
                table[keys + extra].astype({"layer": "int64", "head": "int64"}), on=keys, how="left")
            title = f"{self.name}: {query if len(str(query)) < 60 else str(query)[:57] + '…'}, {len(e)} edges"
        else:
            circ = _required_circuit(circuit)
            one = self._layer(layer, needed=head is not None)
            where = (f"layer {one} " if one is not None and len(self.layers) > 1 else "") + \
                (f"head {head} {circ}" if head is not None else f"{circ}, all heads")
            if feature is not None and match is not None:
                raise BadInput("give feature or match, not both")
            if match is not None:
                hc = head_circuit(self.edge_table, head, circ, layer=one)
                present = self.features[self.features["id"].isin(set(hc["src"]) | set(hc["dst"]))]
                feature = list(self._matches(present, match, where)["id"])
            e = subgraph(self.edge_table, head, circ, top, feature, hops, layer=one)
            centres = [feature] if isinstance(feature, str) else list(feature or ())
            title = f"{self.name}: {where}" + (f" around {', '.join(centres)}" if centres else "") + f", {len(e)} edges"
        if layout is None:
            layout = "layers" if e["layer"].nunique() > 1 else "columns"
        feats = self.features.drop_duplicates("id").set_index("id")
        data = {"title": title, "where": f"run {self.run_id}", "layout": layout, "centres": centres,
                "graph": graph_payload(e, feats, centres)}
        return View(page(data), height)

    def _matches(self, features: pd.DataFrame, text: str, where: str, limit: int = 10) -> pd.DataFrame:
        from featgraph.analyse.search import rank_features

        found = rank_features(features, text, limit=None)
        if found.empty:
            raise BadInput(f"no feature of {where} has a label matching {text!r}: try other words, or `featgraph search RUN TEXT`")
        if len(found) > limit:
            warnings.warn(f"{len(found)} features match {text!r}; showing the {limit} best (narrow the text to see others)",
                          FeatgraphWarning, stacklevel=3)
        return found.head(limit)

    def search(self, text: str, limit: int = 10, layer: int | None = None) -> pd.DataFrame:
        """Features whose label matches `text` (ranked; see analyse.search), each with its strongest QK and OV
        edge per (layer, head), as the key/value (side `src`) and as the query/output (side `dst`). `layer`
        keeps that layer's heads only (and the features they touch).

        Columns: match (1 = best), score, feature, description, layer, head, circuit, side, weight, z, rank,
        other, other_description.
        """
        from featgraph.analyse.filters import check_top
        from featgraph.analyse.search import rank_features, strongest_edges

        check_top(limit, "limit")
        edges, features = self.edge_table, self.features
        if layer is not None:
            edges = edges[edges["layer"] == self._layer(layer)]
            features = features[features["id"].isin(set(edges["src"]) | set(edges["dst"]))]
        found = rank_features(features, text, limit)
        ids = list(found["id"])
        e = strongest_edges(edges, ids)
        desc = self.features.set_index("id")["description"]
        score = dict(zip(found["id"], found["score"]))
        out = e.assign(match=e["feature"].map({f: i + 1 for i, f in enumerate(ids)}), score=e["feature"].map(score),
                       description=e["feature"].map(desc).astype("string"),
                       other_description=e["other"].map(desc).astype("string"))
        return out[["match", "score", "feature", "description", "layer", "head", "circuit", "side", "weight", "z", "rank",
                    "other", "other_description"]].reset_index(drop=True)

    def report(self, out: str | Path, top: int = 15, plots: bool = True, force: bool = False,
               progress: ProgressFactory | None = None) -> Path:
        """One offline HTML page (plus per-head graph pages and figures) in directory `out`; returns index.html.

        It opens with a per-head overview, then figures, then each head's tables and tetrad cards; a search box
        finds features by label. `plots` reloads the run's weights for the positional and correlation figures.
        The page is assembled in featgraph.api.report.
        """
        from featgraph.api.report import build_report

        return build_report(self, out, top=top, plots=plots, force=force, progress=progress)

    # ---------------------------------------------------------------- module-level API

def open_run(path: str | Path, verify: bool = True) -> Run:
    """Open a run directory (or an edge table file) as a `Run`."""
    return Run.open(path, verify=verify)


def import_edges(edge_file: str | Path, out: str | Path, force: bool = False) -> Run:
    """A run directory from an edge table computed elsewhere (Parquet/CSV in featgraph's schema)."""
    return Run.open(rundir.import_edges(Path(edge_file), Path(out), force))


def to_networkx(run: Run | str | Path, head: int | None = None, circuit: str | None = None, layer: int | None = None):
    """A run's (or one layer's / head's / circuit's) MultiDiGraph; `run` may be a path. As `Run.to_networkx`."""
    r = run if isinstance(run, Run) else Run.open(run)
    return r.to_networkx(head, circuit, layer=layer)


def serve(run: Run | str | Path, neo4j: bool = False, host: str = "127.0.0.1", port: int = 8765, timeout: float = 10.0,
          block: bool = True):
    """`Run.serve` for a run or a run directory: the live explorer at http://HOST:PORT/."""
    r = run if isinstance(run, Run) else Run.open(run)
    return r.serve(neo4j=neo4j, host=host, port=port, timeout=timeout, block=block)


def positional(model: str, layer: int, sae_in: str | None = None, features: Sequence[str] = (),
               max_distance: int = 8192, out: str | Path | None = None, force: bool = False) -> pd.DataFrame:
    """Rotary positional profile per head (columns head, distance, score, query, key).

    With `out` (.png), writes the figure and the table as CSV beside it.
    """
    from featgraph.api import reload

    if out is not None:
        out = check_output_file(Path(out), (".png",), force)
        check_output_file(out.with_suffix(".csv"), (".csv",), force)
    df = reload.positional_frame(model, layer, sae_in, features, max_distance)
    if out is not None:
        from featgraph.load.model import model_short_id
        from featgraph.render.plots import positional_figure

        write_frame(df, out.with_suffix(".csv"))
        positional_figure(df, out, model_short_id(model), layer)
    return df


def _ranges(layers: Sequence[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8' (as --layers takes them)."""
    spans: list[list[int]] = []
    for x in sorted(layers):
        if spans and x == spans[-1][1] + 1:
            spans[-1][1] = x
        else:
            spans.append([x, x])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)

"""The report's assembly: a `Run`'s tables, tetrads, figures and validation turned into `render.report`'s data.

`Run.report` calls `build_report`; the page itself is rendered by featgraph.render.report from prepared data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from featgraph.core.progress import ProgressFactory, no_progress
from featgraph.core.schema import parse_feature_id
from featgraph.errors import BadInput, FeatgraphError, FeatgraphWarning
from featgraph.runs.files import staged_dir, write_frame

if TYPE_CHECKING:
    from featgraph.api.run import Run


def build_report(run: Run, out: str | Path, top: int = 15, plots: bool = True, force: bool = False,
                 progress: ProgressFactory | None = None) -> Path:
    """Write `run`'s report into directory `out` (index.html, head pages, figures); returns index.html."""
    return _Assembly(run).build(out, top=top, plots=plots, force=force, progress=progress)


class _Assembly:
    """One report's pieces, from one run (cached lookups live as long as the report)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def build(self, out: str | Path, top: int = 15, plots: bool = True, force: bool = False,
              progress: ProgressFactory | None = None) -> Path:
        """One offline HTML page (plus per-head graph pages and figures) in directory `out`; returns index.html.

        It opens with a per-head overview, then figures, then each head's tables and tetrad cards; a search box
        finds features by label. `plots` reloads the run's weights for the positional and correlation figures.
        """
        from featgraph.analyse.filters import check_top, subgraph
        from featgraph.analyse.tetrads import find_tetrads
        from featgraph.render.report import ReportData, build_page
        from featgraph.render.viz import build_html, write_page

        check_top(top)
        out = Path(out)
        if self.run.path is not None and out.resolve() == self.run.path.resolve():
            raise BadInput(f"{out} is the run itself: choose another directory for the report")
        progress = progress or no_progress
        e = self.run.edge_table
        groups = sorted(e.groupby(["layer", "head", "circuit"]).groups)
        with staged_dir(out, force, kind="report") as tmp:
            tick = progress("tetrads", None)
            tet = find_tetrads(e)
            tick(1)
            figures: list = []
            missing: list[str] = []  # figures not made, and why: a warning each, and a note on the page
            corr = prof = None
            if not plots:
                missing.append("the positional and correlation figures were not asked for (--no-plots)")
            elif self.run.is_atlas:
                self._missing(missing, f"the positional and correlation figures are per layer: make them with `featgraph report "
                              f"{self.run.path}/layers/L{self.run.layers[0]} --out …` (one layer's run)")
            elif not self.run.manifest.has_weights:
                self._missing(missing, "the positional and correlation figures were not made: they need the run's model and SAEs, "
                              "which this run does not record (an imported run or an edge table)")
            else:
                tick = progress("figures", 2)
                if not self._rotary():  # not a failure: there is no such profile (no warning)
                    missing.append("the rotary positional profile: this model has no rotary embedding (GPT-2's positions "
                                   "are learned vectors in the residual stream)")
                try:
                    figures, corr, prof = self._report_figures(tmp, tick)
                except FeatgraphError as err:
                    self._missing(missing, f"the positional and correlation figures were not made: {err}")
            tick = progress("head pages", len(groups))
            pages: dict[tuple[int, int], dict[str, str]] = {}
            for layer, head, circ in groups:
                name = f"layer{layer}_head{head}_{circ.lower()}.html" if e["layer"].nunique() > 1 else f"head{head}_{circ.lower()}.html"
                page_edges = subgraph(e[e["layer"] == layer], int(head), circ, 100)
                write_page(build_html(page_edges, self.run.features, f"layer {layer} head {head} {circ}, top {len(page_edges)} edges"),
                           tmp / name)
                pages.setdefault((int(layer), int(head)), {})[circ] = name
                tick(1)
            if plots and self.run._has_weights and len(tet):
                tet = self._tetrad_cosines(tet, missing)
            data = ReportData(
                name=self.run.name, facts=self._report_facts(tet), overview=self._report_overview(tet, corr),
                heads=self._report_heads(pages, tet, top), figures=figures, features=self._report_features(),
                meta={k: v for k, v in self.run.manifest.to_dict().items()
                      if k in ("model", "sae_in", "sae_out", "conventions", "selection", "labels") and v is not None},
                top=top, validation=self._report_validation(tmp), missing=missing,
                positional={} if prof is None else {
                    int(h): (g["distance"].tolist(), g["score"].tolist())
                    for h, g in prof[prof["query"] == "b_dec"].groupby("head")},
            )
            (tmp / "index.html").write_text(build_page(data), encoding="utf-8")
        return out / "index.html"

    # The report's pieces: tables with the features' ids, labels and links beside each end.

    def _ends(self, df: pd.DataFrame, ends: Sequence[str] = ("src", "dst")) -> pd.DataFrame:
        f = self.run.features.drop_duplicates("id").set_index("id")
        out = df.copy()
        for end in ends:
            ids = out[end]
            out[f"{end}_id"] = ids
            out[f"{end}_index"] = ids.map(lambda i: parse_feature_id(i)[2])
            out[f"{end}_description"] = ids.map(f["description"])
            out[f"{end}_url"] = ids.map(f["url"])
        return out

    def _report_facts(self, tet: pd.DataFrame) -> dict[str, str]:
        m = self.run.manifest
        e = self.run.edge_table
        facts = {}
        model = (m.model or {}).get("neuronpedia_id") or (m.model or {}).get("ref")
        if model:
            facts["model"] = str(model)
        layers = sorted(e["layer"].unique())
        facts["layer" if len(layers) == 1 else "layers"] = ", ".join(map(str, layers))
        for key, what in (("sae_in", "input SAE"), ("sae_out", "output SAE")):
            sid = (getattr(m, key) or {}).get("neuronpedia_id")
            if sid:
                facts[what] = str(sid)
        sel: dict = dict(m.selection or {})
        if sel:
            facts["selection"] = ", ".join(f"{k} {sel[k]}" for k in ("top_k", "min_abs", "per_source_k") if sel.get(k) is not None)
        labelled = int(self.run.features["description"].notna().sum())
        facts["edges"] = f"{len(e):,}"
        facts["features"] = f"{len(self.run.features):,} ({labelled:,} labelled)"
        facts["tetrads"] = f"{len(tet):,}"
        return facts

    def _caption_link(self, fid: str, n: int = 36) -> str:
        from featgraph.render.html import feature_link

        row = self._feature_lookup.get(fid, {})
        return feature_link(fid, parse_feature_id(fid)[2], row.get("description"), row.get("url"), n=n)

    @cached_property
    def _feature_lookup(self) -> dict[str, dict]:
        """id -> {description, url}."""
        return self.run.features.drop_duplicates("id").set_index("id")[["description", "url"]].to_dict("index")

    def _report_overview(self, tet: pd.DataFrame, corr: pd.DataFrame | None) -> pd.DataFrame:
        e = self.run.edge_table
        r_by_head = (corr.attrs.get("pearson_r", {}) if corr is not None else {})
        rows = []
        for (layer, head), g in e.groupby(["layer", "head"], sort=True):
            row: dict[str, Any] = {"layer": int(layer), "head": int(head)}
            ids: list[str] = []
            for circ, key in (("QK", "qk"), ("OV", "ov")):
                c = g[g["circuit"] == circ]
                row[f"{key}_edges"] = len(c) if len(c) else None
                if circ == "QK" and len(c):
                    row["qk_like_share"] = float((c["src"] == c["dst"]).mean())
                distinct = c[c["src"] != c["dst"]].sort_values("rank")
                if len(distinct):
                    best = distinct.iloc[0]
                    row[f"{key}_src"], row[f"{key}_dst"] = self._caption_link(best["src"]), self._caption_link(best["dst"])
                    row[f"{key}_weight"] = float(best["weight"])
                    ids += [best["src"], best["dst"]]
                row[f"{key}_tetrads"] = int(((tet["layer"] == layer) & (tet["head"] == head) & (tet["circuit"] == circ)).sum())
            t = tet[(tet["layer"] == layer) & (tet["head"] == head)]
            if len(t):
                b = t.iloc[0]
                row["tetrad"] = (f"{b['circuit']}: {self._caption_link(b['src_a'], 18)}, {self._caption_link(b['src_b'], 18)} | "
                                 f"{self._caption_link(b['dst_x'], 18)}, {self._caption_link(b['dst_y'], 18)}")
            row["sender_r"] = r_by_head.get(int(head)) if e["layer"].nunique() == 1 else None
            row["ids"] = " ".join(ids)
            rows.append(row)
        return pd.DataFrame(rows)

    def _report_heads(self, pages: dict, tet: pd.DataFrame, top: int) -> list:
        from featgraph.render.report import HeadDetail

        e = self.run.edge_table
        cols = ["rank", "weight", "z", "src", "dst"]
        heads = []
        for (layer, head), g in e.groupby(["layer", "head"], sort=True):
            g = g.sort_values("rank", kind="stable")
            if "z" not in g.columns:
                g = g.assign(z=float("nan"))
            qk, ov = g[g["circuit"] == "QK"], g[g["circuit"] == "OV"]
            stats = {}
            for circ, c in (("QK", qk), ("OV", ov)):
                st = self._layer_stats(int(layer)).get(f"{head}/{circ}", {})
                if len(c):
                    stats[circ] = {"edges": len(c), "positive": int((c["weight"] > 0).sum()),
                                   "min |w| kept": float(c["weight"].abs().min())} | \
                                  ({"matrix mean": st["mean"], "matrix std": st["std"]} if st else {})
            tt = {}
            for circ in ("QK", "OV"):
                t = tet[(tet["layer"] == layer) & (tet["head"] == head) & (tet["circuit"] == circ)].head(6)
                if len(t):
                    t = t.copy()
                    for end in ("src_a", "src_b", "dst_x", "dst_y"):
                        t[f"{end}_description"] = t[end].map(lambda i: self._feature_lookup.get(i, {}).get("description"))
                        t[f"{end}_url"] = t[end].map(lambda i: self._feature_lookup.get(i, {}).get("url"))
                    tt[circ] = t
            heads.append(HeadDetail(
                layer=int(layer), head=int(head), pages=pages.get((int(layer), int(head)), {}),
                qk_top=self._ends(qk[cols].head(top)) if len(qk) else None,
                qk_distinct=self._ends(qk[qk["src"] != qk["dst"]][cols].head(top)) if len(qk) else None,
                ov_top=self._ends(ov[cols].head(top)) if len(ov) else None,
                tetrads=tt, stats=stats))
        return heads

    @cached_property
    def _stats_cache(self) -> dict[int, dict]:
        return {}

    def _layer_stats(self, layer: int) -> dict:
        """The exact matrix moments of one layer's heads ({"HEAD/CIRCUIT": {mean, std, …}}), where the run records them."""
        if not self.run.is_atlas:
            return dict(self.run.manifest.stats) if len(self.run.layers) == 1 else {}
        cache = self._stats_cache
        if layer not in cache:
            try:
                cache[layer] = dict(self.run.layer_run(layer).manifest.stats)
            except FeatgraphError:
                cache[layer] = {}
        return cache[layer]

    def _report_features(self) -> list[list]:
        """The search box's index: per feature id, feature_index, caption, SAE, url, edge count and its three strongest edges."""
        from featgraph.core.schema import caption

        e = self.run.edge_table
        ends = pd.concat([e.assign(feature=e["src"], other=e["dst"], arrow="→"),
                          e.assign(feature=e["dst"], other=e["src"], arrow="←")], ignore_index=True)
        ends = ends.assign(_a=ends["weight"].abs()).sort_values("_a", ascending=False, kind="stable")
        counts = ends.groupby("feature").size()
        best = ends.groupby("feature", sort=False).head(3)
        look = self._feature_lookup
        text: dict[str, list[str]] = {}
        multi = len(self.run.layers) > 1
        for f, L, h, c, w, arrow, o in zip(best["feature"], best["layer"], best["head"], best["circuit"], best["weight"],
                                           best["arrow"], best["other"]):
            od = look.get(o, {}).get("description")
            where = f"L{L} h{h}" if multi else f"h{h}"
            text.setdefault(f, []).append(f"{where} {c} {float(w):+.3g} {arrow} {caption(parse_feature_id(o)[2], od)[:40]}")
        out = []
        for fid, n in counts.items():
            row = look.get(fid, {})
            idx = parse_feature_id(fid)[2]
            out.append([fid, idx, caption(idx, row.get("description")), fid.split("/")[1], row.get("url") or "",
                        int(n), "; ".join(text.get(fid, []))])
        return out

    @staticmethod
    def _missing(notes: list[str], note: str) -> None:
        notes.append(note)
        warnings.warn(f"report: {note}", FeatgraphWarning, stacklevel=4)

    def _tetrad_cosines(self, tet: pd.DataFrame, missing: list[str]) -> pd.DataFrame:
        """Cosines for the tetrads the report shows (the strongest six per head and circuit)."""
        shown = tet.groupby(["layer", "head", "circuit"], sort=False).head(6)
        try:
            explained = self.run._cosines(shown)
        except FeatgraphError as err:
            self._missing(missing, f"the tetrad cards have no cosines: {err}")
            return tet
        out = tet.copy()
        out["cos_src"], out["cos_dst"] = float("nan"), float("nan")
        out.loc[shown.index, ["cos_src", "cos_dst"]] = explained[["cos_src", "cos_dst"]].to_numpy()
        return out

    def _report_validation(self, tmp: Path):
        """The validation section, when the run keeps a validation.parquet (`featgraph validate`)."""
        if self.run.path is None or not (self.run.path / "validation.parquet").is_file():
            return None
        from featgraph.api import validate
        from featgraph.render.report import Figure

        heads, edges = validate.read(self.run.path / "validation.parquet")
        validate.figure(heads, edges, tmp / "validation.png", f"{self.run.name}: layer {self.run.manifest.layer}")
        cols = ["head", "circuit", "pairs", "rho_selected", "rho_active_d0", "rho_active", "rho_active_bias",
                "r2_selected", "r2_active_d0", "r2_active", "r2_active_bias", "r2_exact"]
        return heads[cols], Figure("Edges against real attention on prompts", "validation.png", "")

    def _rotary(self) -> bool:
        """Whether the run's model rotates queries and keys (GPT-2 does not)."""
        from featgraph import families

        model_type = ((self.run.manifest.model or {}).get("config") or {}).get("model_type")
        return not isinstance(model_type, str) or model_type not in families.FAMILIES or families.FAMILIES[model_type].rotary

    def _report_figures(self, tmp: Path, tick) -> tuple[list, pd.DataFrame | None, pd.DataFrame | None]:
        from featgraph.api import reload
        from featgraph.load.model import model_short_id
        from featgraph.render.plots import positional_figure
        from featgraph.render.report import Figure

        m = self.run.manifest
        model, sae_in = m.model or {}, m.sae_in or {}
        figures = []
        prof = None
        if self._rotary():
            prof = reload.positional_frame(str(model["ref"]), int(m.layer or 0), str(sae_in["ref"]))
            write_frame(prof, tmp / "positional.csv")
            positional_figure(prof, tmp / "positional.png", str(model.get("neuronpedia_id") or model_short_id(str(model["ref"]))),
                              int(m.layer or 0))
            figures.append(Figure("Rotary positional profile of the input SAE's b_dec", "positional.png", "positional.csv"))
        tick(1)
        corr = None
        if (m.sae_out or {}).get("ref"):
            corr = self.run.correlation(out=tmp / "correlation.png", force=True)
            figures.append(Figure("QK–OV sender correlation", "correlation.png", "correlation.csv"))
        tick(1)
        return figures, corr, prof

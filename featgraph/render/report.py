"""The run report: one offline HTML page, built from tables the caller prepared (no analysis here).

It opens with what a researcher wants first — per head, how many edges, the like-to-like share,
the strongest distinct edges and the strongest tetrad with labels, the sender correlation and the
positional profile as a sparkline — then the figures, then each head's details: the QK tables
(with and without like-to-like), the OV table once (like-to-like is a QK notion: OV sources and
destinations come from different SAEs), and tetrads as 2×2 cards. A search box finds features by
label across the run. Every feature is `index: short label`, linked to Neuronpedia, full label on hover.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from featgraph.core.schema import ROLES
from featgraph.render.html import esc, feature_link, number, sparkline
from featgraph.render.plots import head_color

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1.2em 2em 4em;max-width:1280px;color:#222;font-size:14px}
h1{font-size:22px;margin:.2em 0}h2{font-size:18px;border-bottom:2px solid #444;margin:1.8em 0 .6em;padding-bottom:2px}
h3{font-size:15px;margin:1.2em 0 .4em}h4{font-size:13.5px;margin:.8em 0 .3em}
.facts{color:#444;line-height:1.6}.facts b{color:#222}.muted,.note{color:#666}
table{border-collapse:collapse;font-size:12.5px;margin:.3em 0 1em}
td,th{border-bottom:1px solid #e3e3e3;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.f{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
a.feat{color:#1a4f8a;text-decoration:none}a.feat:hover{text-decoration:underline}
.pos{color:#2166ac}.neg{color:#b2182b}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:0 1.5em}.grid>div{min-width:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:.8em}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em .7em;background:#fcfcfc}
.card .head{font-size:12px;color:#555;margin-bottom:.3em}.card table{margin:0;width:100%;table-layout:fixed}
.card th{background:none;font-weight:normal;color:#555;font-size:11.5px}.card td,.card th{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.card td.w{text-align:center;font-weight:600;font-size:13px}.card td.w.pos{background:#eef4fb}
.card td.w.neg{background:#fbeeee}.overview{grid-template-columns:repeat(auto-fill,minmax(560px,1fr))}
.overview .title{font-weight:600;display:flex;align-items:center}
.overview .spark{margin-left:auto}.small{font-size:12px}table.strongest{width:100%;table-layout:fixed;margin-top:.3em}
table.strongest th{font-size:11.5px;color:#555}td.arrow{color:#888;text-align:center;padding:3px 0}
table.edges{width:100%;table-layout:fixed}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-1px}
#search{width:24em;padding:5px 7px;font-size:14px}#results{margin-top:.5em}tr.hit td{background:#fff6cc}
.card.hit,table.hit{outline:2px solid #e8b800}
nav.toc a{margin-right:.8em}
.nowrap{white-space:nowrap}img{max-width:min(100%,1000px)}details{margin:.5em 0}pre{font-size:12px;background:#f7f7f7;padding:.6em;overflow:auto}
"""

SCRIPT = """
(function(){
  var F = JSON.parse(document.getElementById('features').textContent);
  var q = document.getElementById('search'), out = document.getElementById('results');
  function el(t, c, x){var e=document.createElement(t); if(c) e.className=c; if(x!=null) e.textContent=x; return e;}
  function link(f){var a=el('a','feat',f[2]); a.href=f[4]; a.target='_blank'; a.rel='noopener'; a.title=f[2]+'\\n'+f[0]; return a;}
  function run(){
    var s=q.value.trim().toLowerCase(), words=s.split(/\\s+/).filter(Boolean);
    out.innerHTML=''; document.querySelectorAll('.hit').forEach(function(r){r.classList.remove('hit');});
    if(!words.length){document.body.removeAttribute('data-matches'); return;}
    var hits=F.filter(function(f){var d=f[2].toLowerCase(); return words.every(function(w){return d.indexOf(w)>=0;});});
    document.body.setAttribute('data-matches', String(hits.length));
    var ids={}; hits.forEach(function(f){ids[f[0]]=1;});
    document.querySelectorAll('[data-f]').forEach(function(r){
      if(r.getAttribute('data-f').split(' ').some(function(i){return ids[i];})) r.classList.add('hit');});
    out.appendChild(el('p','muted',hits.length+' feature'+(hits.length===1?'':'s')+' match'+(hits.length===1?'es':'')+
      (hits.length>100?' (the 100 with most edges shown)':'')+'; their rows are highlighted in the tables below.'));
    if(!hits.length) return;
    hits.sort(function(a,b){return b[5]-a[5];});
    var t=el('table'), h=el('tr');
    ['feature','SAE','edges','strongest edges (head circuit: weight → other end)'].forEach(function(x){h.appendChild(el('th',null,x));});
    t.appendChild(h);
    hits.slice(0,100).forEach(function(f){
      var r=el('tr'), c=el('td','f'); c.appendChild(link(f)); r.appendChild(c); r.appendChild(el('td','nowrap',f[3]));
      r.appendChild(el('td','num',String(f[5]))); r.appendChild(el('td',null,f[6])); t.appendChild(r);});
    out.appendChild(t);
  }
  q.addEventListener('input', run);
})();
"""


@dataclass(frozen=True)
class Figure:
    title: str
    image: str
    data: str


@dataclass(frozen=True)
class HeadDetail:
    """One (layer, head): its graph pages and tables. Edge tables have columns rank, weight, z and, for each end
    (`src`, `dst`), `_id`, `_index`, `_description`, `_url`; tetrads the tetrad columns with descriptions and urls."""

    layer: int
    head: int
    pages: dict[str, str]
    qk_top: pd.DataFrame | None = None
    qk_distinct: pd.DataFrame | None = None
    ov_top: pd.DataFrame | None = None
    tetrads: dict[str, pd.DataFrame] = field(default_factory=dict)
    stats: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, prepared by the API layer."""

    name: str
    facts: dict[str, str]
    overview: pd.DataFrame  # one row per (layer, head): see _overview
    heads: list[HeadDetail]
    figures: list[Figure]
    features: list[list]  # [id, feature_index, caption, sae, url, n_edges, strongest edges as text]
    meta: dict
    top: int
    validation: tuple[pd.DataFrame, Figure] | None = None
    positional: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict)  # head -> (distances, scores)
    missing: list[str] = field(default_factory=list)  # what the page lacks and why (figures not made, cosines)


PLURAL = {"key": "keys", "query": "queries", "value": "values", "output": "outputs"}

VALIDATION_NOTE = ("Per head, Spearman ρ (rho_) and variance share (r2_ = 1 − Var(real − predicted) / Var(real)) of the "
                   "real values predicted from the run's edges (selected), all active feature pairs at the stored distance "
                   "(active_d0), with the true distance (active), plus the b_dec terms (active_bias), and the exact sum "
                   "with the SAE's error (exact). See docs/maths.md.")


def _link(row, end: str) -> str:
    return feature_link(row[f"{end}_id"], int(row[f"{end}_index"]), row[f"{end}_description"], row[f"{end}_url"])


def _w(v: float) -> str:
    return f"<span class='{'pos' if v > 0 else 'neg'}'>{esc(number(v))}</span>"


def edge_table(df: pd.DataFrame | None, circuit: str) -> str:
    if df is None or df.empty:
        return "<p class='note'>none</p>"
    src_role, dst_role = ROLES[circuit]
    rows = []
    for r in df.to_dict("records"):
        z = "" if pd.isna(r.get("z")) else number(r["z"], 3)
        rows.append(f"<tr data-f='{esc(r['src_id'])} {esc(r['dst_id'])}'><td class='num'>{int(r['rank'])}</td>"
                    f"<td class='num'>{_w(float(r['weight']))}</td><td class='num muted'>{esc(z)}</td>"
                    f"<td class='f'>{_link(r, 'src')}</td><td class='f'>{_link(r, 'dst')}</td></tr>")
    return (f"<table class='edges'><colgroup><col style='width:3.2em'><col style='width:5em'><col style='width:3.6em'><col><col>"
            f"</colgroup><tr><th class='num'>rank</th><th class='num'>weight</th><th class='num'>z</th><th>{src_role}</th>"
            f"<th>{dst_role}</th></tr>{''.join(rows)}</table>")


def tetrad_cards(df: pd.DataFrame | None, circuit: str) -> str:
    """Each tetrad as a 2×2 card: the two sources as rows, the two destinations as columns, the four signed weights."""
    if df is None or df.empty:
        return "<p class='note'>none</p>"
    src_role, dst_role = ROLES[circuit]
    cards = []
    for t in df.to_dict("records"):
        def f(end):
            return feature_link(t[end], int(t[end].rsplit("/", 1)[1]), t.get(f"{end}_description"), t.get(f"{end}_url"), n=40)

        cos = ""
        if not pd.isna(t.get("cos_src", float("nan"))):
            cos = f" · cos of the {PLURAL[src_role]} {number(t['cos_src'], 3)} · of the {PLURAL[dst_role]} {number(t['cos_dst'], 3)}"
        ll = " · like-to-like" if t.get("like_to_like") else ""
        cell = lambda v: f"<td class='w {'pos' if v > 0 else 'neg'}'>{esc(number(float(v)))}</td>"  # noqa: E731
        cards.append(
            f"<div class='card'><div class='head'>strength {esc(number(float(t['strength'])))}{esc(cos)}{ll}</div>"
            f"<table data-f='{esc(t['src_a'])} {esc(t['src_b'])} {esc(t['dst_x'])} {esc(t['dst_y'])}'>"
            f"<tr><th>{src_role} \\ {dst_role}</th><th>{f('dst_x')}</th><th>{f('dst_y')}</th></tr>"
            f"<tr><th>{f('src_a')}</th>{cell(t['w_ax'])}{cell(t['w_ay'])}</tr>"
            f"<tr><th>{f('src_b')}</th>{cell(t['w_bx'])}{cell(t['w_by'])}</tr></table></div>")
    return f"<div class='cards'>{''.join(cards)}</div>"


def _plain(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class='note'>none</p>"
    return df.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def _overview(data: ReportData) -> str:
    """Small multiples: a card per (layer, head) with its counts, profile sparkline and strongest edges and tetrad."""
    o = data.overview
    multi_layer = o["layer"].nunique() > 1
    cards = []
    for r in o.to_dict("records"):
        h = int(r["head"])
        spark = ""
        if h in data.positional:
            spark = sparkline(data.positional[h][1], width=150, height=30, color=head_color(h),
                              title=f"head {h}: (R(Δ) q)·k of b_dec over Δ = 0 … max (log-spaced)")
        counts = []
        if not pd.isna(r.get("qk_edges")):
            ll = "" if pd.isna(r.get("qk_like_share")) else f", {100 * r['qk_like_share']:.0f}% like-to-like"
            counts.append(f"QK {number(r['qk_edges'])} edges{ll}")
        if not pd.isna(r.get("ov_edges")):
            counts.append(f"OV {number(r['ov_edges'])} edges")
        counts.append(f"tetrads {number(r.get('qk_tetrads'))} QK / {number(r.get('ov_tetrads'))} OV")
        if not pd.isna(r.get("sender_r")):
            counts.append(f"sender r {number(r['sender_r'], 3)}")
        lines = []
        for key, circ in (("qk", "QK"), ("ov", "OV")):
            if not pd.isna(r.get(f"{key}_weight")):
                lines.append(f"<tr><th>{circ}</th><td class='num'>{_w(float(r[f'{key}_weight']))}</td>"
                             f"<td class='f'>{r[f'{key}_src']}</td><td class='arrow'>→</td><td class='f'>{r[f'{key}_dst']}</td></tr>")
        if r.get("tetrad"):
            lines.append(f"<tr><th>tetrad</th><td></td><td colspan='3' class='f'>{r['tetrad']}</td></tr>")
        title = (f"layer {int(r['layer'])} · " if multi_layer else "") + f"head {h}"
        cards.append(
            f"<div class='card' data-f='{esc(r.get('ids', ''))}'><div class='title'><span class='swatch' style='background:{head_color(h)}'>"
            f"</span><a href='#L{int(r['layer'])}h{h}'>{title}</a><span class='spark'>{spark}</span></div>"
            f"<div class='muted small'>{esc(' · '.join(counts))}</div>"
            f"<table class='strongest'><colgroup><col style='width:4.2em'><col style='width:4.5em'><col><col style='width:1.2em'><col>"
            f"</colgroup>{''.join(lines)}</table></div>")
    return f"<div class='cards overview'>{''.join(cards)}</div>"


def _head_section(h: HeadDetail, top: int) -> str:
    links = " · ".join(f"<a href='{esc(p)}'>{c} graph</a>" for c, p in sorted(h.pages.items(), key=lambda kv: kv[0] != "QK"))
    stats = " · ".join(f"{c}: {', '.join(f'{k} {number(v)}' for k, v in s.items())}" for c, s in h.stats.items())
    parts = [f"<h3 id='L{h.layer}h{h.head}'><span class='swatch' style='background:{head_color(h.head)}'></span>"
             f"Layer {h.layer} · head {h.head}</h3><p class='muted'>{links}{' · ' + esc(stats) if stats else ''}</p>"]
    if h.qk_top is not None:
        parts.append(f"<div class='grid'><div><h4>QK: top {top}</h4>{edge_table(h.qk_top, 'QK')}</div>"
                     f"<div><h4>QK: top {top} without like-to-like</h4>{edge_table(h.qk_distinct, 'QK')}</div></div>")
    if h.ov_top is not None:
        parts.append(f"<h4>OV: top {top}</h4>{edge_table(h.ov_top, 'OV')}")
    for circ, t in h.tetrads.items():
        parts.append(f"<h4>{circ} tetrads, strongest first</h4>{tetrad_cards(t, circ)}")
    return "".join(parts)


def build_page(data: ReportData) -> str:
    facts = " · ".join(f"{esc(k)} <b>{esc(v)}</b>" for k, v in data.facts.items())
    figs = "".join(f"<h3>{esc(f.title)}</h3><img src='{esc(f.image)}' alt='{esc(f.title)}'>"
                   + (f"<p><a href='{esc(f.data)}'>data (CSV)</a></p>" if f.data else "") for f in data.figures)
    if data.missing:
        figs = "".join(f"<p class='note missing'>Not in this report: {esc(m)}.</p>" for m in data.missing) + figs
    if data.validation is not None:
        table, fig = data.validation
        figs += (f"<h3>Edges against real attention on prompts</h3><p class='note'>{esc(VALIDATION_NOTE)}</p>{_plain(table)}"
                 f"<img src='{esc(fig.image)}' alt='{esc(fig.title)}'>")
    toc = " ".join(f"<a href='#L{h.layer}h{h.head}'>{h.head if len({x.layer for x in data.heads}) == 1 else f'{h.layer}.{h.head}'}</a>"
                   for h in data.heads)
    features = json.dumps(data.features, ensure_ascii=False).replace("</", "<\\/")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>featgraph report: {esc(data.name)}</title>"
        f"<style>{CSS}</style></head><body><h1>featgraph report: {esc(data.name)}</h1><p class='facts'>{facts}</p>"
        "<p><input id='search' type='search' placeholder='find features by label, e.g. numerical' aria-label='find features by label'>"
        "</p><div id='results'></div>"
        f"<h2>Heads at a glance</h2>{_overview(data)}"
        "<p class='note'>Edges point from the position read to the position reading: key → query (QK), value → output (OV). "
        "Like-to-like: a QK edge from a feature to itself. Sender r: Pearson r between each key/value feature's mean QK as a key "
        "and its mean |OV|. Positional profile: the head's QK score of the input SAE's b_dec with itself over token distance.</p>"
        f"<h2>Figures</h2>{figs}<h2>Heads</h2><nav class='toc'>{toc}</nav>"
        f"{''.join(_head_section(h, data.top) for h in data.heads)}"
        f"<h2>Manifest</h2><details><summary>model, SAEs, conventions, selection</summary>"
        f"<pre>{esc(json.dumps(data.meta, indent=2, default=str))}</pre></details>"
        f"<script id='features' type='application/json'>{features}</script><script>{SCRIPT}</script></body></html>")

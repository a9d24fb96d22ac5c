// featgraph's explorer: the page of `featgraph serve` (talks to its /api) and of `run.show()` (static: the graph
// is inlined as window.FEATGRAPH_DATA). sigma.js draws, graphology holds the drawn graph. Every label reaches the
// page through textContent or the canvas, never as HTML.
(function () {
  "use strict";
  var STATIC = window.FEATGRAPH_DATA || null;
  var POS = "#2166ac", NEG = "#b2182b", FADED = "#e4e4e4";
  var PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];
  var CAPTION = 36;
  var S = {
    info: null, features: new Map(), edges: new Map(), solo: new Set(), pinned: new Set(), origin: new Map(),
    selected: null, highlight: null, layout: "columns", filter: "", drawn: 0, saes: []
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) { var x = document.createElement(tag); if (cls) x.className = cls; if (text != null) x.textContent = text; return x; }
  function fmt(v) { return v == null ? "" : (Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0) ? v.toExponential(3) : v.toPrecision(4)); }
  function caption(id) {
    var f = S.features.get(id) || {};
    var idx = f.feature_index != null ? f.feature_index : id.slice(id.lastIndexOf("/") + 1);
    return f.description ? idx + ": " + f.description : String(idx);
  }
  function shortCaption(id) { var c = caption(id); return c.length > CAPTION ? c.slice(0, CAPTION - 1) + "…" : c; }
  function edgeKey(e) { return [e.circuit, e.layer, e.head, e.src, e.dst].join("|"); }
  function roles(circuit) { return circuit === "QK" ? ["key", "query"] : ["value", "output"]; }
  function status(text, error) { var s = $("status"); s.textContent = text || ""; s.className = error ? "error" : ""; }
  function saeOf(id) { var f = S.features.get(id); return f && f.sae ? f.sae : id.split("/")[1]; }
  function colorOf(id) {
    var sae = saeOf(id), i = S.saes.indexOf(sae);
    if (i < 0) { S.saes.push(sae); i = S.saes.length - 1; }
    return PALETTE[i % PALETTE.length];
  }
  function link(id, text) {
    var f = S.features.get(id) || {}, a = el("a", null, text == null ? caption(id) : text);
    a.href = f.url || ("https://www.neuronpedia.org/" + id); a.target = "_blank"; a.rel = "noopener noreferrer";
    return a;
  }

  // ------------------------------------------------------------ state

  function merge(g, origin) {
    var limit = S.info ? S.info.limits.edges : Infinity, fresh = [];
    Object.keys(g.features || {}).forEach(function (id) { S.features.set(id, g.features[id]); });
    (g.edges || []).forEach(function (e) { if (!S.edges.has(edgeKey(e))) fresh.push(e); });
    if (S.edges.size + fresh.length > limit) {
      status("drawing " + (S.edges.size + fresh.length).toLocaleString() + " edges would pass the page's limit of " +
             limit.toLocaleString() + ": collapse or clear first", true);
      return null;
    }
    var keys = [];
    fresh.forEach(function (e) { var k = edgeKey(e); S.edges.set(k, e); keys.push(k); });
    (g.edges || []).forEach(function (e) { keys.push(edgeKey(e)); });
    if (origin) {
      var set = S.origin.get(origin) || new Set();
      fresh.forEach(function (e) { set.add(edgeKey(e)); });
      S.origin.set(origin, set);
    }
    return keys;
  }

  function prune() {
    var used = new Set();
    S.edges.forEach(function (e) { used.add(e.src); used.add(e.dst); });
    S.solo.forEach(function (id) { if (used.has(id)) S.solo.delete(id); });
    S.features.forEach(function (_, id) {
      if (!used.has(id) && !S.solo.has(id) && !S.pinned.has(id) && id !== S.selected) S.features.delete(id);
    });
    S.pinned.forEach(function (id) { if (!used.has(id)) S.solo.add(id); });
  }

  function collapse(id) {
    var set = S.origin.get(id);
    if (set) set.forEach(function (k) { S.edges.delete(k); });
    S.origin.delete(id);
    S.highlight = null;
    prune();
    draw();
  }

  function clearAll() {
    S.edges.clear(); S.solo.clear(); S.origin.clear(); S.highlight = null; S.selected = null;
    S.features.forEach(function (_, id) { if (!S.pinned.has(id)) S.features.delete(id); });
    S.pinned.forEach(function (id) { S.solo.add(id); });
    showHelp();
    draw();
  }

  // ------------------------------------------------------------ layouts

  // The two-column and layered layouts are templates/layout.js' (shared with the static graph pages).
  function layoutOpts() {
    var box = $("graph").getBoundingClientRect();
    return {feature: function (id) { return S.features.get(id); }, solo: Array.from(S.solo),
            aspect: box.width > 0 && box.height > 0 ? box.width / box.height : 1.6};
  }
  function layoutColumns(edges) { return featgraphLayout.columns(edges, layoutOpts()); }
  function layoutLayers(edges) { return featgraphLayout.layers(edges, layoutOpts()); }

  function layoutForce(edges) {
    var g = new graphology.Graph({type: "undirected", multi: false, allowSelfLoops: false}), ids = new Set();
    edges.forEach(function (e) { ids.add(e.src); ids.add(e.dst); });
    S.solo.forEach(function (id) { ids.add(id); });
    var n = ids.size, i = 0;
    ids.forEach(function (id) {  // a deterministic start: a circle in index order
      var a = 2 * Math.PI * (i++) / Math.max(1, n);
      g.addNode(id, {x: Math.cos(a) * n, y: Math.sin(a) * n});
    });
    edges.forEach(function (e) {
      if (e.src === e.dst) return;
      var w = Math.abs(e.weight);
      if (g.hasEdge(e.src, e.dst)) g.updateEdgeAttribute(e.src, e.dst, "weight", function (x) { return (x || 0) + w; });
      else g.addEdge(e.src, e.dst, {weight: w});
    });
    if (n > 1 && window.graphologyLibrary) {
      var fa2 = graphologyLibrary.layoutForceAtlas2;
      fa2.assign(g, {iterations: n > 2000 ? 60 : 150, settings: Object.assign(fa2.inferSettings(g), {edgeWeightInfluence: 0.5})});
    }
    var out = new Map(), xs = [], ys = [];
    g.forEachNode(function (id, a) { out.set("f:" + id, {x: a.x, y: a.y, side: "right"}); xs.push(a.x); ys.push(a.y); });
    var x0 = Math.min.apply(null, xs.concat([0])), x1 = Math.max.apply(null, xs.concat([1]));
    var y0 = Math.min.apply(null, ys.concat([0])), y1 = Math.max.apply(null, ys.concat([1]));
    var pad = Math.max(x1 - x0, y1 - y0) * 0.08;
    return {pos: out, bbox: {x: [x0 - pad, x1 + (x1 - x0) * 0.3 + pad], y: [y0 - pad, y1 + pad]}};
  }

  // ------------------------------------------------------------ drawing

  var graph = new graphology.MultiDirectedGraph({allowSelfLoops: true});
  var container = $("graph");

  function drawLabel(ctx, d, settings) {
    if (!d.label) return;
    ctx.font = settings.labelWeight + " " + settings.labelSize + "px " + settings.labelFont;
    ctx.fillStyle = d.labelColor || "#222";
    if (d.side === "left") {
      ctx.textAlign = "right"; ctx.fillText(d.label, d.x - d.size - 3, d.y + settings.labelSize / 3); ctx.textAlign = "left";
    } else {
      ctx.fillText(d.label, d.x + d.size + 3, d.y + settings.labelSize / 3);
    }
  }

  var renderer = new Sigma(graph, container, {
    defaultEdgeType: "arrow", enableEdgeEvents: true, renderEdgeLabels: false, labelRenderedSizeThreshold: 0,
    labelDensity: 1.2, labelGridCellSize: 70, labelFont: "system-ui, sans-serif", labelSize: 12, zIndex: true,
    defaultDrawNodeLabel: drawLabel, stagePadding: 20, allowInvalidContainer: true,
    nodeReducer: function (n, a) {
      var r = Object.assign({}, a);
      var dim = (S.selected && !a.nearSelected) || (S.filter && !a.matches) || (S.highlight && !a.inHighlight);
      if (dim) { r.color = FADED; r.label = ""; r.zIndex = 0; } else { r.zIndex = 1; }
      if (a.feature === S.selected) { r.highlighted = true; r.forceLabel = true; r.zIndex = 2; }
      return r;
    },
    edgeReducer: function (k, a) {
      var r = Object.assign({}, a);
      if (S.highlight) { if (S.highlight.has(a.key)) { r.size = a.size + 1.5; r.zIndex = 2; } else { r.color = FADED; r.zIndex = 0; } }
      if (S.selected && a.src !== S.selected && a.dst !== S.selected) { r.color = FADED; r.zIndex = 0; }
      return r;
    }
  });

  function draw() {
    var edges = Array.from(S.edges.values());
    var lay = S.layout === "columns" ? layoutColumns(edges) : S.layout === "layers" ? layoutLayers(edges) : layoutForce(edges);
    graph.clear();
    var deg = new Map(), near = new Set();
    edges.forEach(function (e) {
      deg.set(e.src, (deg.get(e.src) || 0) + 1); deg.set(e.dst, (deg.get(e.dst) || 0) + 1);
      if (e.src === S.selected) near.add(e.dst);
      if (e.dst === S.selected) near.add(e.src);
    });
    if (S.selected) near.add(S.selected);
    var q = S.filter.toLowerCase(), inHi = new Set();
    if (S.highlight) edges.forEach(function (e) { if (S.highlight.has(edgeKey(e))) { inHi.add(e.src); inHi.add(e.dst); } });
    lay.pos.forEach(function (p, key) {
      var id = key.slice(2), pinned = S.pinned.has(id);
      graph.addNode(key, {
        x: p.x, y: p.y, side: p.side, feature: id, label: shortCaption(id), color: pinned ? "#111" : colorOf(id),
        size: Math.min(13, 3.5 + 1.6 * Math.log2(1 + (deg.get(id) || 0))) + (pinned ? 2 : 0), forceLabel: pinned,
        nearSelected: near.has(id), matches: !!q && caption(id).toLowerCase().indexOf(q) >= 0, inHighlight: inHi.has(id)
      });
    });
    var wmax = 0;
    edges.forEach(function (e) { wmax = Math.max(wmax, Math.abs(e.weight)); });
    edges.forEach(function (e) {
      var k = edgeKey(e), s = S.layout === "columns" ? "s:" + e.src : "f:" + e.src, d = S.layout === "columns" ? "d:" + e.dst : "f:" + e.dst;
      if (s === d) return;  // a like-to-like edge is drawn in the two-column layout (a feature on both sides)
      graph.addEdgeWithKey(k, s, d, {key: k, src: e.src, dst: e.dst, color: e.weight > 0 ? POS : NEG,
                                     size: 0.6 + 4 * Math.abs(e.weight) / (wmax || 1), zIndex: 1});
    });
    renderer.setCustomBBox(lay.bbox);
    renderer.getCamera().setState({x: 0.5, y: 0.5, ratio: 1, angle: 0});
    $("counts").textContent = lay.pos.size + " nodes · " + S.edges.size + " edges" + (S.pinned.size ? " · " + S.pinned.size + " pinned" : "");
    S.drawn += 1;
    var n = S.drawn;
    renderer.once("afterRender", function () { document.body.setAttribute("data-drawn", String(n)); });
    renderer.refresh();
    if (S.selected) showFeature(S.selected);
  }

  // ------------------------------------------------------------ hover and selection

  var tip = $("tip");
  function showTip(node, ev) {
    tip.innerHTML = ""; tip.appendChild(node); tip.hidden = false; moveTip(ev);
  }
  function moveTip(ev) {
    if (tip.hidden || !ev) return;
    tip.style.left = Math.min(window.innerWidth - 460, ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 12) + "px";
  }
  container.addEventListener("mousemove", moveTip);
  function weightText(e) {
    return "weight " + fmt(e.weight) + (e.z == null ? "" : "  (z " + fmt(e.z) + ")") + (e.rank == null ? "" : ", rank " + e.rank);
  }
  function nodeTip(id) {
    var d = el("div"), f = S.features.get(id) || {};
    d.appendChild(el("b", null, caption(id)));
    d.appendChild(el("div", "muted", (f.sae || saeOf(id)) + " · " + id + (S.pinned.has(id) ? " · pinned" : "")));
    return d;
  }
  function edgeTip(e) {
    var r = roles(e.circuit), d = el("div");
    d.appendChild(el("div", null, r[0] + " " + caption(e.src)));
    d.appendChild(el("div", null, "→ " + r[1] + " " + caption(e.dst)));
    d.appendChild(el("div", e.weight > 0 ? "pos" : "neg", e.circuit + " layer " + e.layer + " head " + e.head + ": " + weightText(e)));
    return d;
  }
  renderer.on("enterNode", function (p) { showTip(nodeTip(graph.getNodeAttribute(p.node, "feature")), p.event.original); });
  renderer.on("leaveNode", function () { tip.hidden = true; });
  renderer.on("enterEdge", function (p) { var e = S.edges.get(p.edge); if (e) showTip(edgeTip(e), p.event.original); });
  renderer.on("leaveEdge", function () { tip.hidden = true; });
  renderer.on("clickNode", function (p) { select(graph.getNodeAttribute(p.node, "feature")); });
  renderer.on("clickStage", function () { if (S.selected) { S.selected = null; draw(); showHelp(); } });

  function select(id) { S.selected = id; draw(); }

  function showHelp() {
    var p = $("panel"); p.innerHTML = "";
    p.appendChild(el("p", "muted", STATIC ? "Click a feature to select it (the rest dims); hover for full labels, weights, z and ranks."
      : "Find a feature, or draw a head. Click a feature to select it (the rest dims); hover for full labels, weights, z and ranks."));
  }

  function showFeature(id) {
    var p = $("panel"), f = S.features.get(id) || {};
    p.innerHTML = "";
    var h = el("h2"); h.appendChild(link(id)); p.appendChild(h);
    p.appendChild(el("div", "muted", (f.sae || saeOf(id)) + " · " + id));
    var row = el("div", "row");
    function button(text, fn, cls) { var b = el("button", cls, text); b.type = "button"; b.addEventListener("click", fn); row.appendChild(b); return b; }
    if (!STATIC) {
      button("expand", quiet(function () { return expand(id); }), "expand");
      button("collapse", function () { collapse(id); }, "collapse");
    }
    button(S.pinned.has(id) ? "unpin" : "pin", function () { togglePin(id); }, "pin");
    p.appendChild(row);
    var mine = [];
    S.edges.forEach(function (e) { if (e.src === id || e.dst === id) mine.push(e); });
    mine.sort(function (a, b) { return Math.abs(b.weight) - Math.abs(a.weight); });
    p.appendChild(el("div", "muted", mine.length + " drawn edge" + (mine.length === 1 ? "" : "s")));
    var t = el("table");
    mine.slice(0, 200).forEach(function (e) {
      var tr = el("tr"), out = e.src === id, r = roles(e.circuit), other = out ? e.dst : e.src;
      tr.appendChild(el("td", null, e.src === e.dst ? "↺ itself" : (out ? "→ " + r[1] : "← " + r[0])));
      tr.appendChild(el("td", "muted", "L" + e.layer + " H" + e.head + " " + e.circuit));
      var td = el("td"); td.appendChild(link(other, shortCaption(other))); tr.appendChild(td);
      tr.appendChild(el("td", "num " + (e.weight > 0 ? "pos" : "neg"), fmt(e.weight)));
      t.appendChild(tr);
    });
    p.appendChild(t);
  }

  function togglePin(id) {
    if (S.pinned.has(id)) S.pinned.delete(id); else S.pinned.add(id);
    prune(); draw();
  }

  // ------------------------------------------------------------ server calls

  function api(path, params, body) {
    var url = path + (params ? "?" + new URLSearchParams(params).toString() : "");
    var init = body ? {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)} : {};
    status("…");
    return fetch(url, init).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok || j.error) throw new Error(j.error || ("HTTP " + r.status));
        status(j.message || "", false);
        return j;
      });
    }).catch(function (err) { status(String(err.message || err), true); throw err; });
  }

  function filters() {
    return {only_layer: $("f-layer").value, only_head: $("f-head").value, only_circuit: $("f-circuit").value,
            sign: $("f-sign").value, min_weight: $("f-min").value || "0", max_rank: $("f-rank").value || "0",
            limit: $("f-limit").value || "25"};
  }

  function expand(id) {
    return api("/api/expand", Object.assign({feature: id}, filters())).then(function (g) {
      if (!S.features.has(id) && g.features && g.features[id]) S.features.set(id, g.features[id]);
      S.solo.add(id);
      if (merge(g, id)) { prune(); draw(); if (!g.message) status("expanded " + caption(id) + ": " + g.edges.length + " edges"); }
    });
  }

  function addFeature(id, f) { S.features.set(id, f); S.solo.add(id); draw(); }

  function find(text) {
    return api("/api/search", {q: text, limit: 20}).then(function (j) {
      var box = $("results"); box.innerHTML = "";
      Object.keys(j.features || {}).forEach(function (id) { if (!S.features.has(id)) S.features.set(id, j.features[id]); });
      j.results.forEach(function (r) {
        var d = el("div", "result"); d.setAttribute("data-id", r.id);
        var h = el("div"); h.appendChild(link(r.id, r.caption)); d.appendChild(h);
        d.appendChild(el("div", "muted", "score " + fmt(r.score) + " · " + r.id));
        var edges = el("div", "edges");
        r.edges.forEach(function (e) {
          var rr = roles(e.circuit), other = e.side === "src" ? e.dst : e.src;
          edges.appendChild(el("div", e.weight > 0 ? "pos" : "neg", "L" + e.layer + " H" + e.head + " " + e.circuit + " " +
            (e.side === "src" ? rr[0] + " → " + rr[1] : rr[1] + " ← " + rr[0]) + " " + (j.captions[other] || other) + "  " + fmt(e.weight)));
        });
        d.appendChild(edges);
        var row = el("div", "row"), add = el("button", "add", "add"), ex = el("button", "expand", "expand");
        add.type = ex.type = "button";
        add.addEventListener("click", function () { addFeature(r.id, j.features[r.id]); });
        ex.addEventListener("click", quiet(function () { S.features.set(r.id, j.features[r.id]); S.selected = r.id; return expand(r.id); }));
        row.appendChild(add); row.appendChild(ex); d.appendChild(row);
        box.appendChild(d);
      });
      document.body.setAttribute("data-found", String(j.results.length));
      document.body.setAttribute("data-searches", String(Number(document.body.getAttribute("data-searches") || 0) + 1));
    });
  }

  function replaceWith(g, layout, highlight) {
    S.edges.clear(); S.origin.clear(); S.selected = null;
    var keys = merge(g, null);
    S.highlight = highlight && keys ? new Set(keys) : null;
    prune();
    if (layout) { S.layout = layout; $("layout").value = layout; }
    draw();
  }

  function headParams() {
    return {layer: $("h-layer").value, head: $("h-head").value, circuit: $("h-circuit").value, limit: $("h-top").value || "60"};
  }

  function listMotifs(title, rows, toKeys, describe) {
    var p = $("panel"); p.innerHTML = ""; p.appendChild(el("h2", null, title));
    rows.forEach(function (m, i) {
      var d = el("div", "result motif"); d.setAttribute("data-i", String(i));
      d.appendChild(el("div", null, describe(m)));
      d.addEventListener("click", function () { S.highlight = new Set(toKeys(m)); draw(); });
      p.appendChild(d);
    });
  }

  function showTetrads() {
    var hp = headParams();
    return api("/api/tetrads", {layer: hp.layer, head: hp.head, circuit: hp.circuit, limit: 12}).then(function (j) {
      replaceWith(j, "columns", true);
      listMotifs(j.tetrads.length + " tetrads of layer " + hp.layer + " head " + hp.head + " " + hp.circuit, j.tetrads,
        function (t) { return t.edges; },
        function (t) { return "strength " + fmt(t.strength) + ": " + j.captions[t.a] + " / " + j.captions[t.b] + " × " + j.captions[t.x] + " / " + j.captions[t.y]; });
    });
  }

  function showPaths() {
    return api("/api/paths", {layer: $("h-layer").value, limit: 20}).then(function (j) {
      replaceWith(j, "layers", true);
      listMotifs(j.paths.length + " strongest cross-layer paths", j.paths, function (t) { return t.edges; },
        function (t) { return "|w1·w2| " + fmt(Math.abs(t.product)) + ": " + j.captions[t.src] + " → " + j.captions[t.mid] + " → " + j.captions[t.dst]; });
    });
  }

  function connectPinned() {
    var ids = Array.from(S.pinned);
    if (ids.length !== 2) { status("pin exactly two features to find the heads connecting them (" + ids.length + " pinned)", true); return Promise.resolve(); }
    return api("/api/connect", {feature: ids[0], other: ids[1]}).then(function (j) {
      var keys = merge(j, null); S.highlight = keys ? new Set(keys) : null; draw();
      if (!j.edges.length) status("no head connects them directly");
    });
  }

  // ------------------------------------------------------------ console

  function fillConsole(lib) {
    var sel = $("c-query");
    lib.forEach(function (q) { var o = el("option", null, q.name); o.value = q.name; o.title = q.description; sel.appendChild(o); });
    var c = el("option", null, "Cypher (read-only, below)"); c.value = ""; sel.appendChild(c);
    function params() {
      var box = $("c-params"); box.innerHTML = "";
      var q = lib.filter(function (x) { return x.name === sel.value; })[0];
      $("c-text").disabled = !!q;
      if (!q) return;
      q.params.forEach(function (p) {
        if (p.name === "run") return;
        var l = el("label", null, p.name + " (" + p.type + ")"), i = el("input");
        i.name = p.name; i.value = p.default == null ? "" : p.default; i.title = p.doc; i.setAttribute("data-param", p.name);
        if (p.default == null && (p.name === "feature" || p.name === "other") && S.selected) i.value = S.selected;
        l.appendChild(i); box.appendChild(l);
      });
    }
    sel.addEventListener("change", params); params();
  }

  function runConsole() {
    var name = $("c-query").value, body = {params: {}};
    if (name) {
      body.query = name;
      document.querySelectorAll("#c-params input").forEach(function (i) { if (i.value !== "") body.params[i.name] = i.value; });
    } else {
      body.query = $("c-text").value;
    }
    return api("/api/query", null, body).then(function (j) {
      var t = $("table"); t.innerHTML = ""; t.hidden = false;
      t.appendChild(el("div", "muted", j.total + " row" + (j.total === 1 ? "" : "s") + (j.truncated ? " (showing " + j.rows.length + ")" : "")));
      var table = el("table"), head = el("tr");
      j.columns.forEach(function (c) { head.appendChild(el("th", null, c)); });
      table.appendChild(head);
      j.rows.forEach(function (r) {
        var tr = el("tr");
        r.forEach(function (v) { tr.appendChild(el("td", typeof v === "number" ? "num" : null, v == null ? "" : (typeof v === "number" ? fmt(v) : String(v)))); });
        table.appendChild(tr);
      });
      t.appendChild(table);
      if (j.graph && j.graph.edges.length) {
        var keys = merge(j.graph, null); S.highlight = keys ? new Set(keys) : null; prune(); draw();
      }
      document.body.setAttribute("data-console", String(Number(document.body.getAttribute("data-console") || 0) + 1));
    });
  }

  // ------------------------------------------------------------ exports

  function exportPinned(format) {
    var ids = Array.from(S.pinned);
    if (!ids.length) { status("pin features first: the export is the pinned features and the edges among them", true); return; }
    status("…");
    fetch("/api/export", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({format: format, features: ids})})
      .then(function (r) {
        if (!r.ok) return r.json().then(function (j) { throw new Error(j.error); });
        var name = (r.headers.get("Content-Disposition") || "").replace(/^.*filename="?([^"]+)"?$/, "$1") || ("pinned." + format);
        return r.blob().then(function (b) {
          var a = el("a"); a.href = URL.createObjectURL(b); a.download = name; document.body.appendChild(a); a.click();
          setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
          status("exported " + name);
        });
      }).catch(function (err) { status(String(err.message || err), true); });
  }

  // ------------------------------------------------------------ wiring

  function options(sel, values, keepFirst) {
    var s = $(sel);
    if (!keepFirst) s.innerHTML = "";
    values.forEach(function (v) { var o = el("option", null, String(v)); o.value = String(v); s.appendChild(o); });
  }

  function start(info) {
    S.info = info;
    $("title").textContent = "featgraph explorer: " + info.run;
    $("source").textContent = info.where;
    document.title = "featgraph: " + info.run;
    options("f-layer", info.layers, true); options("h-layer", info.layers, false);
    var heads = [];
    Object.keys(info.heads).forEach(function (l) { info.heads[l].forEach(function (h) { if (heads.indexOf(h) < 0) heads.push(h); }); });
    heads.sort(function (a, b) { return a - b; });
    options("f-head", heads, true);
    function headsOf() { options("h-head", info.heads[$("h-layer").value] || [], false); }
    $("h-layer").addEventListener("change", headsOf); headsOf();
    if (info.library) fillConsole(info.library);
  }

  function quiet(fn) {  // a failed request is shown in the status line; nothing more to do with its rejection
    return function () { var p = fn.apply(null, arguments); if (p && p.catch) p.catch(function () {}); };
  }

  $("layout").addEventListener("change", function (ev) { S.layout = ev.target.value; draw(); });
  $("fit").addEventListener("click", function () { renderer.getCamera().animatedReset(); });
  $("filter").addEventListener("input", function (ev) { S.filter = ev.target.value.trim(); draw(); });
  $("clear").addEventListener("click", clearAll);
  $("find").addEventListener("submit", function (ev) { ev.preventDefault(); if ($("q").value.trim()) quiet(find)($("q").value.trim()); });
  $("head").addEventListener("click", quiet(function () {
    return api("/api/head", headParams()).then(function (g) { replaceWith(g, "columns", false); });
  }));
  $("tetrads").addEventListener("click", quiet(showTetrads));
  $("paths").addEventListener("click", quiet(showPaths));
  $("connect").addEventListener("click", quiet(connectPinned));
  $("c-run").addEventListener("click", quiet(runConsole));
  document.querySelectorAll("[data-export]").forEach(function (b) {
    b.addEventListener("click", function () { exportPinned(b.getAttribute("data-export")); });
  });

  function crossings() {  // edge crossings between the two columns (the two-column layout), for tests
    var segs = [];
    graph.forEachEdge(function (k, a, s, d) {
      segs.push([graph.getNodeAttribute(s, "y"), graph.getNodeAttribute(d, "y")]);
    });
    var n = 0;
    for (var i = 0; i < segs.length; i++) for (var j = i + 1; j < segs.length; j++) {
      if ((segs[i][0] - segs[j][0]) * (segs[i][1] - segs[j][1]) < 0) n++;
    }
    return n;
  }
  function viewport(key) {  // a node's position in the page (client coordinates), for tests
    var d = renderer.getNodeDisplayData(key), v = renderer.framedGraphToViewport(d), r = container.getBoundingClientRect();
    return [v.x + r.left, v.y + r.top];
  }

  window.featgraph = {graph: graph, renderer: renderer, state: S, draw: draw, expand: expand, find: find, select: select,
                      togglePin: togglePin, collapse: collapse, crossings: crossings, viewport: viewport, merge: merge,
                      setLayout: function (l) { S.layout = l; $("layout").value = l; draw(); }};

  if (STATIC) {
    document.body.classList.add("static");
    $("title").textContent = STATIC.title;
    $("source").textContent = STATIC.where || "";
    merge(STATIC.graph, null);
    (STATIC.centres || []).forEach(function (id) { S.pinned.add(id); });
    S.layout = STATIC.layout || "columns"; $("layout").value = S.layout;
    showHelp(); draw();
    document.body.setAttribute("data-ready", "1");
  } else {
    fetch("/api/info").then(function (r) { return r.json(); }).then(function (info) {
      start(info); showHelp(); draw();
      document.body.setAttribute("data-ready", "1");
    }).catch(function (err) { status("cannot reach the featgraph server: " + err, true); });
  }
})();

// featgraph's layouts, shared by the explorer (explorer/app.js, drawn by sigma.js) and the static graph pages
// (graph.html, drawn by vis-network): pure functions of the edges, no page state and no DOM.
//
// An edge is {src, dst, weight} (feature ids). opts: feature(id) -> {layer, feature_index} or undefined (for the order
// and the rows), solo: ids drawn without edges, aspect: the canvas' width / height.
// Each returns {pos: Map(key -> {x, y, side, row}), bbox: {x: [x0, x1], y: [y0, y1]}}, y growing upwards (sigma's
// convention; vis-network's grows downwards, so graph.html negates it). Keys are "s:" + id and "d:" + id in the
// two-column layout (a feature that is both a source and a destination is drawn on both sides) and "f:" + id in
// the layered one.
(function (root) {
  "use strict";

  // Barycentric ordering: each node moves to the |weight|-weighted mean position of its neighbours in the
  // other column (or adjacent rows), sweeping both ways a few times; ties keep the previous order.
  function sweep(order, pos, nbrs) {
    var bary = new Map();
    order.forEach(function (n) {
      var s = 0, w = 0;
      (nbrs.get(n) || []).forEach(function (p) { if (pos.has(p[0])) { s += p[1] * pos.get(p[0]); w += p[1]; } });
      bary.set(n, w > 0 ? s / w : pos.get(n));
    });
    order.sort(function (a, b) { return (bary.get(a) - bary.get(b)) || (pos.get(a) - pos.get(b)); });
    order.forEach(function (n, i) { pos.set(n, i / Math.max(1, order.length - 1)); });
  }

  function byIndex(feature) {
    return function (a, b) {
      var fa = feature(a.slice(2)) || {}, fb = feature(b.slice(2)) || {};
      return ((fa.layer || 0) - (fb.layer || 0)) || ((fa.feature_index || 0) - (fb.feature_index || 0)) || (a < b ? -1 : a > b ? 1 : 0);
    };
  }

  function defaults(opts) {
    opts = opts || {};
    return {feature: opts.feature || function () { return undefined; }, solo: opts.solo || [], aspect: opts.aspect > 0 ? opts.aspect : 1.6};
  }

  // Two columns, sources (keys, values) on the left and destinations (queries, outputs) on the right, each ordered
  // to reduce crossings; the columns spaced for the canvas' aspect.
  function columns(edges, opts) {
    var o = defaults(opts);
    var left = [], right = [], seenL = new Set(), seenR = new Set(), nbrs = new Map();
    function add(map, a, b, w) { if (!map.has(a)) map.set(a, []); map.get(a).push([b, w]); }
    edges.forEach(function (e) {
      var s = "s:" + e.src, d = "d:" + e.dst, w = Math.abs(e.weight) || 1e-12;
      if (!seenL.has(s)) { seenL.add(s); left.push(s); }
      if (!seenR.has(d)) { seenR.add(d); right.push(d); }
      add(nbrs, s, d, w); add(nbrs, d, s, w);
    });
    o.solo.forEach(function (id) { var s = "s:" + id; if (!seenL.has(s)) { seenL.add(s); left.push(s); } });
    var cmp = byIndex(o.feature);
    left.sort(cmp); right.sort(cmp);
    var pos = new Map();
    [left, right].forEach(function (col) { col.forEach(function (n, i) { pos.set(n, i / Math.max(1, col.length - 1)); }); });
    for (var it = 0; it < 12; it++) { sweep(right, pos, nbrs); sweep(left, pos, nbrs); }
    var rows = Math.max(left.length, right.length, 2);
    var height = rows - 1, gap = Math.max(2, height * o.aspect * 0.38);
    var out = new Map();
    function place(col, x, side) {
      var off = (rows - col.length) / 2;  // centre the shorter column
      col.forEach(function (n, i) { out.set(n, {x: x, y: -(off + i), side: side}); });
    }
    place(left, 0, "left"); place(right, gap, "right");
    return {pos: out, bbox: {x: [-gap * 0.62, gap * 1.62], y: [-(rows - 1) - 0.5, 0.5]}, left: left, right: right};
  }

  // Layers as rows, the first layer on top, each row ordered to reduce crossings with its neighbours.
  function layers(edges, opts) {
    var o = defaults(opts);
    var rows = new Map(), nbrs = new Map(), ids = new Set();
    edges.forEach(function (e) { ids.add(e.src); ids.add(e.dst); });
    o.solo.forEach(function (id) { ids.add(id); });
    function layerOf(id) { var f = o.feature(id); return f && f.layer != null ? f.layer : 0; }
    ids.forEach(function (id) { var l = layerOf(id); if (!rows.has(l)) rows.set(l, []); rows.get(l).push("f:" + id); });
    edges.forEach(function (e) {
      if (layerOf(e.src) === layerOf(e.dst)) return;
      var a = "f:" + e.src, b = "f:" + e.dst, w = Math.abs(e.weight) || 1e-12;
      if (!nbrs.has(a)) nbrs.set(a, []);
      if (!nbrs.has(b)) nbrs.set(b, []);
      nbrs.get(a).push([b, w]); nbrs.get(b).push([a, w]);
    });
    var cmp = byIndex(o.feature);
    var order = Array.from(rows.keys()).sort(function (a, b) { return a - b; }), pos = new Map(), widest = 1;
    order.forEach(function (l) {
      var r = rows.get(l); r.sort(cmp); widest = Math.max(widest, r.length);
      r.forEach(function (n, i) { pos.set(n, i / Math.max(1, r.length - 1)); });
    });
    for (var it = 0; it < 6; it++) {
      order.forEach(function (l) { sweep(rows.get(l), pos, nbrs); });
      order.slice().reverse().forEach(function (l) { sweep(rows.get(l), pos, nbrs); });
    }
    var out = new Map(), spacing = 1, rowGap = Math.max(2, widest * 0.35);
    order.forEach(function (l, j) {
      var r = rows.get(l), off = (widest - r.length) / 2;
      r.forEach(function (n, i) { out.set(n, {x: (off + i) * spacing, y: -j * rowGap, side: "right", row: l}); });
    });
    return {pos: out, bbox: {x: [-1, widest + 1.5], y: [-(order.length - 1) * rowGap - 1, 1]}, layers: order, rows: rows};
  }

  root.featgraphLayout = {columns: columns, layers: layers, sweep: sweep};
})(typeof window !== "undefined" ? window : this);

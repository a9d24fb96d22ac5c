// Mutual-exclusion tetrads of one head and circuit (`featgraph tetrads` also gives cosines):
// sources a < b, destinations x < y, sign(w_ax) = sign(w_by) = -sign(w_ay) = -sign(w_bx).
// Without a 4-cycle pattern (LadybugDB 0.22 returns wrong rows for one, and Neo4j expands every edge of
// every head around it): sources with edges of both signs are kept; each destination pairs its positive
// in-edges with its negative ones into (a, b, x); each source pair then crosses its destinations with
// w_ax > 0 > w_bx with those with w_ax < 0 < w_bx. Labels are looked up one MATCH at a time: LadybugDB
// plans four lookups in one MATCH as a cross product.
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param circuit str = OV: QK or OV
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a)-[r:QK|OV]->(x)
WHERE r.head = $head AND r.layer = $layer AND r.circuit = $circuit AND ($run = '*' OR r.run = $run)
WITH a, collect({x: x.id, w: r.weight}) AS outs, min(r.weight) AS lo, max(r.weight) AS hi
WHERE lo < 0 AND hi > 0
UNWIND outs AS o
WITH o.x AS x, collect(CASE WHEN o.w > 0 THEN {src: a.id, w: o.w} END) AS pos,
     collect(CASE WHEN o.w < 0 THEN {src: a.id, w: o.w} END) AS neg
WHERE size(pos) > 0 AND size(neg) > 0
UNWIND pos AS p
UNWIND neg AS q
WITH x, p, q, p.src < q.src AS p_first
WHERE p.src <> q.src
WITH x, CASE WHEN p_first THEN p.src ELSE q.src END AS a, CASE WHEN p_first THEN q.src ELSE p.src END AS b,
     CASE WHEN p_first THEN p.w ELSE q.w END AS w_ax, CASE WHEN p_first THEN q.w ELSE p.w END AS w_bx
WITH a, b, collect(CASE WHEN w_ax > 0 THEN {x: x, wa: w_ax, wb: w_bx} END) AS up,
     collect(CASE WHEN w_ax < 0 THEN {x: x, wa: w_ax, wb: w_bx} END) AS down
WHERE size(up) > 0 AND size(down) > 0
UNWIND up AS u
UNWIND down AS v
WITH a, b, CASE WHEN u.x < v.x THEN u ELSE v END AS s, CASE WHEN u.x < v.x THEN v ELSE u END AS t
WITH a, b, s.x AS x, t.x AS y, s.wa AS w_ax, t.wa AS w_ay, s.wb AS w_bx, t.wb AS w_by
WITH a, b, x, y, w_ax, w_ay, w_bx, w_by,
     CASE WHEN abs(w_ax) < abs(w_ay) THEN abs(w_ax) ELSE abs(w_ay) END AS m1,
     CASE WHEN abs(w_bx) < abs(w_by) THEN abs(w_bx) ELSE abs(w_by) END AS m2
WITH a, b, x, y, w_ax, w_ay, w_bx, w_by, CASE WHEN m1 < m2 THEN m1 ELSE m2 END AS strength
ORDER BY strength DESC, a, b, x, y
LIMIT $limit
MATCH (fa:Feature {id: a})
WITH a, b, x, y, w_ax, w_ay, w_bx, w_by, strength, fa
MATCH (fb:Feature {id: b})
WITH a, b, x, y, w_ax, w_ay, w_bx, w_by, strength, fa, fb
MATCH (fx:Feature {id: x})
WITH a, b, x, y, w_ax, w_ay, w_bx, w_by, strength, fa, fb, fx
MATCH (fy:Feature {id: y})
RETURN a AS src_a, fa.description AS src_a_description, b AS src_b, fb.description AS src_b_description,
       x AS dst_x, fx.description AS dst_x_description, y AS dst_y, fy.description AS dst_y_description,
       w_ax, w_ay, w_bx, w_by, strength
ORDER BY strength DESC, src_a, src_b, dst_x, dst_y

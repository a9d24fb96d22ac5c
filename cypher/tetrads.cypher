// Mutual-exclusion tetrads of one head and circuit (`featgraph tetrads` also gives cosines):
// sources a < b, destinations x < y, sign(w_ax) = sign(w_by) = -sign(w_ay) = -sign(w_bx).
// Without a 4-cycle pattern (LadybugDB 0.22 returns wrong rows for one, and Neo4j expands every edge of
// every head around it): each destination's in-edges are paired into (a, b, x) with opposite signs, then
// each source pair's destinations with w_ax > 0 > w_bx are crossed with those with w_ax < 0 < w_bx.
// Labels are looked up one MATCH at a time: LadybugDB plans four lookups in one MATCH as a cross product.
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param circuit str = OV: QK or OV
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a)-[r:QK|OV]->(x)
WHERE r.circuit = $circuit AND r.layer = $layer AND r.head = $head AND ($run = '*' OR r.run = $run)
WITH x, collect({src: a.id, w: r.weight}) AS ins
WHERE size(ins) > 1
UNWIND ins AS p
UNWIND ins AS q
WITH x.id AS x, p.src AS a, q.src AS b, p.w AS w_ax, q.w AS w_bx
WHERE a < b AND w_ax * w_bx < 0
WITH a, b, collect(CASE WHEN w_ax > 0 THEN {x: x, wa: w_ax, wb: w_bx} END) AS pos,
     collect(CASE WHEN w_ax < 0 THEN {x: x, wa: w_ax, wb: w_bx} END) AS neg
UNWIND pos AS u
UNWIND neg AS v
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

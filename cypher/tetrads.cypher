// Mutual-exclusion tetrads of one head and circuit (for small graphs; `featgraph tetrads` scales):
// sources a < b, destinations x < y, sign(w_ax) = sign(w_by) = -sign(w_ay) = -sign(w_bx).
// Written as two MATCH stages: LadybugDB 0.22 returns wrong rows for the single 4-cycle pattern.
// @param head int: attention head
// @param circuit str = OV: QK or OV
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a:Feature)-[ax:QK|OV]->(x:Feature)<-[bx:QK|OV]-(b:Feature)
WHERE ax.head = $head AND bx.head = $head AND ax.circuit = $circuit AND bx.circuit = $circuit
  AND a.id < b.id AND ax.weight * bx.weight < 0 AND ($run = '*' OR (ax.run = $run AND bx.run = $run))
WITH a, b, x, ax.weight AS w_ax, bx.weight AS w_bx
MATCH (a)-[ay:QK|OV]->(y:Feature)<-[by:QK|OV]-(b)
WHERE ay.head = $head AND by.head = $head AND ay.circuit = $circuit AND by.circuit = $circuit
  AND x.id < y.id AND w_ax * by.weight > 0 AND w_ax * ay.weight < 0 AND ($run = '*' OR (ay.run = $run AND by.run = $run))
WITH a, b, x, y, w_ax, ay.weight AS w_ay, w_bx, by.weight AS w_by
WITH a, b, x, y, w_ax, w_ay, w_bx, w_by,
     CASE WHEN abs(w_ax) < abs(w_ay) THEN abs(w_ax) ELSE abs(w_ay) END AS m1,
     CASE WHEN abs(w_bx) < abs(w_by) THEN abs(w_bx) ELSE abs(w_by) END AS m2
WITH a, b, x, y, w_ax, w_ay, w_bx, w_by, CASE WHEN m1 < m2 THEN m1 ELSE m2 END AS strength
ORDER BY strength DESC, a.id, b.id, x.id, y.id
LIMIT $limit
RETURN a.id AS src_a, a.description AS src_a_description, b.id AS src_b, b.description AS src_b_description,
       x.id AS dst_x, x.description AS dst_x_description, y.id AS dst_y, y.description AS dst_y_description,
       w_ax, w_ay, w_bx, w_by, strength
ORDER BY strength DESC, src_a, src_b, dst_x, dst_y

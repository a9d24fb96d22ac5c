// The strongest cross-layer 2-step paths: value feature v -OV (a head of layer L)-> feature o, which a head
// of layer L + 1 reads as a key (QK) or value (OV) -> feature d; ranked by |w1 · w2|, both steps from one
// run. Exact top `limit`: each OV edge's path_best (|w1| times the strongest edge leaving o at L + 1,
// written at load) bounds its paths and is attained, so the `limit` best paths have products of at least
// the limit-th largest path_best (or any product, when fewer OV edges lead on).
// @param layer int = -1: layer L of the first (OV) step (-1: every layer)
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH ()-[r1:OV]->()
WHERE r1.path_best IS NOT NULL AND ($layer = -1 OR r1.layer = $layer) AND ($run = '*' OR r1.run = $run)
WITH r1.path_best AS best
ORDER BY best DESC
LIMIT $limit
WITH min(best) AS least, count(*) AS n
WITH CASE WHEN n < $limit THEN 0.0 ELSE least END AS cut
MATCH (v:Feature)-[r1:OV]->(o:Feature)-[r2:QK|OV]->(d:Feature)
WHERE r1.path_best >= cut AND ($layer = -1 OR r1.layer = $layer) AND ($run = '*' OR r1.run = $run)
  AND r2.run = r1.run AND r2.layer = r1.layer + 1 AND abs(r1.weight * r2.weight) >= cut
RETURN r1.layer AS layer, r1.head AS head, v.id AS src, v.description AS src_description,
       o.id AS mid, o.description AS mid_description, r2.circuit AS circuit, r2.head AS next_head,
       d.id AS dst, d.description AS dst_description, r1.weight AS w1, r2.weight AS w2, r1.weight * r2.weight AS product
ORDER BY abs(product) DESC, src, mid, dst, layer, head, circuit, next_head
LIMIT $limit

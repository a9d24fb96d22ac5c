// The strongest cross-layer 2-step paths: value feature v -OV (a head of layer L)-> feature o, which a head
// of layer L + 1 reads as a key (QK) or value (OV) -> feature d; ranked by |w1 · w2|, both steps from one
// run. Exact without enumerating every path: a load ranks each OV edge by the strongest path through it
// (path_rank over the run, layer_path_rank within L; ties share the smaller rank), and the `limit`
// strongest paths start on edges of rank <= limit.
// @param layer int = -1: layer L of the first (OV) step (-1: every layer)
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (v:Feature)-[r1:OV]->(o:Feature)-[r2:QK|OV]->(d:Feature)
WHERE (($layer = -1 AND r1.path_rank <= $limit) OR (r1.layer = $layer AND r1.layer_path_rank <= $limit))
  AND ($run = '*' OR r1.run = $run) AND r2.run = r1.run AND r2.layer = r1.layer + 1
RETURN r1.layer AS layer, r1.head AS head, v.id AS src, v.description AS src_description,
       o.id AS mid, o.description AS mid_description, r2.circuit AS circuit, r2.head AS next_head,
       d.id AS dst, d.description AS dst_description, r1.weight AS w1, r2.weight AS w2, r1.weight * r2.weight AS product
ORDER BY abs(product) DESC, src, mid, dst, layer, head, circuit, next_head
LIMIT $limit

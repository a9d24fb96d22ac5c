// A feature's strongest edges both ways, by |weight|: its `limit` strongest out-edges (the feature is the key or
// value), then its `limit` strongest in-edges (the query or output), with filters (what `featgraph serve`
// draws when a feature is expanded). A like-to-like edge is in both parts. Cypher gives a UNION's rows no order
// (LadybugDB may return the in-edges first): featgraph puts the parts back in order by `side` (@parts).
// @parts side: out, in
// @param feature str: feature id
// @param only_layer int = -1: edges of this layer only (-1: any layer)
// @param only_head int = -1: edges of this head only (-1: any head)
// @param only_circuit str = *: QK or OV only (*: both)
// @param sign int = 0: 1 positive weights only, -1 negative only, 0 both
// @param min_weight float = 0.0: |weight| at least this
// @param max_rank int = 0: rank within its head and circuit at most this (0: no cut)
// @param limit int = 25: edges each way
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a:Feature {id: $feature})-[r:QK|OV]->(b:Feature)
WHERE ($only_layer = -1 OR r.layer = $only_layer) AND ($only_head = -1 OR r.head = $only_head)
  AND ($only_circuit = '*' OR r.circuit = $only_circuit) AND ($sign = 0 OR r.weight * $sign > 0)
  AND abs(r.weight) >= $min_weight AND ($max_rank = 0 OR r.rank <= $max_rank) AND ($run = '*' OR r.run = $run)
RETURN 'out' AS side, r.layer AS layer, r.head AS head, r.circuit AS circuit, r.weight AS weight, r.rank AS rank, r.z AS z,
       a.id AS src, a.description AS src_description, b.id AS dst, b.description AS dst_description
ORDER BY abs(r.weight) DESC, layer, head, circuit, dst
LIMIT $limit
UNION ALL
MATCH (a:Feature)-[r:QK|OV]->(b:Feature {id: $feature})
WHERE ($only_layer = -1 OR r.layer = $only_layer) AND ($only_head = -1 OR r.head = $only_head)
  AND ($only_circuit = '*' OR r.circuit = $only_circuit) AND ($sign = 0 OR r.weight * $sign > 0)
  AND abs(r.weight) >= $min_weight AND ($max_rank = 0 OR r.rank <= $max_rank) AND ($run = '*' OR r.run = $run)
RETURN 'in' AS side, r.layer AS layer, r.head AS head, r.circuit AS circuit, r.weight AS weight, r.rank AS rank, r.z AS z,
       a.id AS src, a.description AS src_description, b.id AS dst, b.description AS dst_description
ORDER BY abs(r.weight) DESC, layer, head, circuit, src
LIMIT $limit

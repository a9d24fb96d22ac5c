// Features whose edges recur across heads: how many distinct heads touch each feature.
// @param min_heads int = 2: at least this many heads
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = every run in the store; `featgraph query RUN` passes RUN's name)
MATCH (a:Feature)-[r:QK|OV]->(b:Feature)
WHERE $run = '*' OR r.run = $run
UNWIND [a.id, b.id] AS feature
WITH feature, count(DISTINCT r.head) AS heads, count(*) AS edge_ends
WHERE heads >= $min_heads
RETURN feature, heads, edge_ends
ORDER BY heads DESC, edge_ends DESC, feature
LIMIT $limit

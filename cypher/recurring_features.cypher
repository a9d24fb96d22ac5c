// Features whose edges recur across heads: how many distinct heads touch each feature, and its
// edge ends (in + out; a like-to-like edge counts twice), with their labels.
// @param min_heads int = 2: at least this many heads
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a:Feature)-[r:QK|OV]->(b:Feature)
WHERE $run = '*' OR r.run = $run
UNWIND [a.id, b.id] AS feature
WITH feature, r.head AS head, count(*) AS n
WITH feature, count(*) AS heads, sum(n) AS edge_ends
WHERE heads >= $min_heads
WITH feature, heads, edge_ends
ORDER BY heads DESC, edge_ends DESC, feature
LIMIT $limit
MATCH (f:Feature {id: feature})
RETURN feature, f.description AS feature_description, heads, edge_ends
ORDER BY heads DESC, edge_ends DESC, feature

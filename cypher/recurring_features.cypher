// Features whose edges recur across heads: how many distinct heads touch each feature.
// @param min_heads int = 2: at least this many heads
// @param limit int = 20: rows to return
MATCH (a:Feature)-[r:QK|OV]->(b:Feature)
UNWIND [a.id, b.id] AS feature
WITH feature, count(DISTINCT r.head) AS heads, count(*) AS edge_ends
WHERE heads >= $min_heads
RETURN feature, heads, edge_ends
ORDER BY heads DESC, edge_ends DESC, feature
LIMIT $limit

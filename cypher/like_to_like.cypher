// Like-to-like QK edges of one head: a feature attending to itself.
// @param head int: attention head
// @param limit int = 20: rows to return
MATCH (a:Feature)-[r:QK]->(b:Feature)
WHERE r.head = $head AND a.id = b.id
RETURN r.rank AS rank, r.weight AS weight, a.id AS feature, a.description AS description
ORDER BY abs(r.weight) DESC, feature
LIMIT $limit

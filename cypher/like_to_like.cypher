// Like-to-like QK edges of one head: a feature attending to itself.
// @param head int: attention head
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a:Feature)-[r:QK]->(b:Feature)
WHERE r.head = $head AND a.id = b.id AND ($run = '*' OR r.run = $run)
RETURN r.rank AS rank, r.weight AS weight, a.id AS feature, a.description AS description
ORDER BY abs(r.weight) DESC, feature
LIMIT $limit

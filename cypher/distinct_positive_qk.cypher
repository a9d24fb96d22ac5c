// Positive QK edges between different features (the post's second table).
// @param head int: attention head
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (k:Feature)-[r:QK]->(q:Feature)
WHERE r.head = $head AND k.id <> q.id AND r.weight > 0 AND ($run = '*' OR r.run = $run)
RETURN r.rank AS rank, r.weight AS weight, k.id AS key, k.description AS key_description,
       q.id AS query, q.description AS query_description
ORDER BY r.weight DESC, key, query
LIMIT $limit

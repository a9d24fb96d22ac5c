// Positive QK edges between different features (the post's second table).
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (k)-[r:QK]->(q)
WHERE r.circuit = 'QK' AND r.layer = $layer AND r.head = $head AND r.weight > 0 AND k.id <> q.id
  AND ($run = '*' OR r.run = $run)
RETURN r.rank AS rank, r.weight AS weight, k.id AS key, k.description AS key_description,
       q.id AS query, q.description AS query_description
ORDER BY r.weight DESC, key, query
LIMIT $limit

// Like-to-like QK edges of one head: a feature attending to itself.
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a)-[r:QK]->(b)
WHERE r.circuit = 'QK' AND r.layer = $layer AND r.head = $head AND a.id = b.id AND ($run = '*' OR r.run = $run)
RETURN r.rank AS rank, r.weight AS weight, a.id AS feature, a.description AS description
ORDER BY abs(r.weight) DESC, feature
LIMIT $limit

// What a query feature attends to: its QK edges from key features, in every head of every layer.
// @param feature str: query feature id, e.g. gemma-2-2b/12-gemmascope-res-16k/8517
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (k:Feature)-[r:QK]->(q:Feature {id: $feature})
WHERE $run = '*' OR r.run = $run
RETURN r.layer AS layer, r.head AS head, r.weight AS weight, k.id AS key, k.description AS key_description
ORDER BY abs(r.weight) DESC, layer, head, key
LIMIT $limit

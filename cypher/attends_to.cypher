// What a query feature attends to: its QK edges from key features, in every head.
// @param feature str: query feature id, e.g. gemma-2-2b/12-gemmascope-res-16k/8517
// @param limit int = 20: rows to return
MATCH (k:Feature)-[r:QK]->(q:Feature {id: $feature})
RETURN r.head AS head, r.weight AS weight, k.id AS key, k.description AS key_description
ORDER BY abs(r.weight) DESC, head, key
LIMIT $limit

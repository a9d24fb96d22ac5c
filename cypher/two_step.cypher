// Two steps through one head: query feature q attends to key feature j (QK), and j's value writes output o (OV).
// Ranked by |QK weight × OV weight|.
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (j)-[qk:QK]->(q)
WHERE qk.circuit = 'QK' AND qk.layer = $layer AND qk.head = $head AND ($run = '*' OR qk.run = $run)
MATCH (j)-[ov:OV]->(o)
WHERE ov.circuit = 'OV' AND ov.layer = $layer AND ov.head = $head AND ($run = '*' OR ov.run = $run)
WITH q, j, o, qk.weight AS qk_weight, ov.weight AS ov_weight, qk.weight * ov.weight AS product
ORDER BY abs(product) DESC, q.id, j.id, o.id
LIMIT $limit
RETURN q.id AS query, q.description AS query_description, j.id AS key_value, j.description AS key_value_description,
       o.id AS output, o.description AS output_description, qk_weight, ov_weight, product
ORDER BY abs(product) DESC, query, key_value, output

// What a value feature writes: its OV edges to output features, in every head of every layer.
// @param feature str: value feature id
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (v:Feature {id: $feature})-[r:OV]->(o:Feature)
WHERE $run = '*' OR r.run = $run
RETURN r.layer AS layer, r.head AS head, r.weight AS weight, o.id AS output, o.description AS output_description
ORDER BY abs(r.weight) DESC, layer, head, output
LIMIT $limit

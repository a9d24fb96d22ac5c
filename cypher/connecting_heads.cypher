// The heads, of every layer, that connect two features directly: the QK and OV edges between them, either way.
// @param feature str: one feature id
// @param other str: the other feature id (the same id: its like-to-like edges)
// @param limit int = 100: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a:Feature)-[r:QK|OV]->(b:Feature)
WHERE a.id IN [$feature, $other] AND b.id IN [$feature, $other] AND (a.id <> b.id OR $feature = $other)
  AND ($run = '*' OR r.run = $run)
RETURN r.layer AS layer, r.head AS head, r.circuit AS circuit, r.weight AS weight, r.rank AS rank,
       a.id AS src, a.description AS src_description, b.id AS dst, b.description AS dst_description
ORDER BY abs(r.weight) DESC, layer, head, circuit, src, dst
LIMIT $limit

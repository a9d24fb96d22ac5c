// The strongest edges of one head and circuit, by |weight|.
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param circuit str = QK: QK or OV
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a)-[r:QK|OV]->(b)
WHERE r.circuit = $circuit AND r.layer = $layer AND r.head = $head AND ($run = '*' OR r.run = $run)
RETURN r.rank AS rank, r.weight AS weight, a.id AS src, a.description AS src_description,
       b.id AS dst, b.description AS dst_description
ORDER BY abs(r.weight) DESC, src, dst
LIMIT $limit

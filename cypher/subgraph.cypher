// The edges among a set of features (the ids separated by commas), strongest first: the subgraph they induce,
// as `featgraph serve` exports its pinned features.
// Neo4j's text: each listed feature found by its id, then its out-edges to the others.
// @param features str: feature ids separated by commas
// @param limit int = 5000: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
WITH split($features, ',') AS ids
UNWIND ids AS id
MATCH (a:Feature {id: id})-[r:QK|OV]->(b:Feature)
WHERE b.id IN ids AND ($run = '*' OR r.run = $run)
RETURN r.layer AS layer, r.head AS head, r.circuit AS circuit, r.weight AS weight, r.rank AS rank, r.z AS z,
       a.id AS src, a.description AS src_description, b.id AS dst, b.description AS dst_description
ORDER BY abs(weight) DESC, layer, head, circuit, src, dst
LIMIT $limit

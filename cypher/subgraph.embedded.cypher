// The edges among a set of features (the ids separated by commas), strongest first: the subgraph they induce,
// as `featgraph serve` exports its pinned features.
// LadybugDB's text: its list function is string_split (no split()), and it filters both ends with IN in one
// MATCH (10 ms at 10⁶ edges, where an UNWIND of the ids took 0.35 s).
// @param features str: feature ids separated by commas
// @param limit int = 5000: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (a:Feature)-[r:QK|OV]->(b:Feature)
WHERE a.id IN string_split($features, ',') AND b.id IN string_split($features, ',') AND ($run = '*' OR r.run = $run)
RETURN r.layer AS layer, r.head AS head, r.circuit AS circuit, r.weight AS weight, r.rank AS rank, r.z AS z,
       a.id AS src, a.description AS src_description, b.id AS dst, b.description AS dst_description
ORDER BY abs(weight) DESC, layer, head, circuit, src, dst
LIMIT $limit

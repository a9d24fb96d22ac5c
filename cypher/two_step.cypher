// Two steps through one head: query feature q attends to key feature j (QK), and j's value writes output o (OV).
// Ranked by |QK weight × OV weight|. Exact without forming every pair: the head's edges are read once per
// stage, both circuits together (j is the source of both). The strongest pair through each j (its largest
// |QK| × largest |OV|) is a real pair, so the `limit`-th strongest of those is a floor `cut` for the
// answer; then only edges that can reach it (|w| × the other circuit's largest |w| >= cut) are paired.
// (The UNWIND before min() keeps LadybugDB 0.22 from dropping the ORDER BY in front of an aggregation.)
// The embedded store runs two_step.embedded.cypher, the same method with the circuits read apart.
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (j)-[r:QK|OV]->()
WHERE r.circuit IN ['QK', 'OV'] AND r.layer = $layer AND r.head = $head AND ($run = '*' OR r.run = $run)
WITH j, max(CASE WHEN r.circuit = 'QK' THEN abs(r.weight) END) AS top_qk,
     max(CASE WHEN r.circuit = 'OV' THEN abs(r.weight) END) AS top_ov
WHERE top_qk IS NOT NULL AND top_ov IS NOT NULL
WITH max(top_qk) AS mq, max(top_ov) AS mo, collect(top_qk * top_ov) AS bests
UNWIND bests AS best
WITH mq, mo, best
ORDER BY best DESC
LIMIT $limit
UNWIND [best] AS top
WITH mq, mo, min(top) AS least, count(*) AS n
WITH mq, mo, CASE WHEN n < $limit THEN 0.0 ELSE least END AS cut
MATCH (j)-[r:QK|OV]->(x)
WHERE r.circuit IN ['QK', 'OV'] AND r.layer = $layer AND r.head = $head AND ($run = '*' OR r.run = $run)
  AND abs(r.weight) * CASE WHEN r.circuit = 'QK' THEN mo ELSE mq END >= cut
WITH cut, j, collect(CASE WHEN r.circuit = 'QK' THEN {f: x.id, w: r.weight} END) AS qks,
     collect(CASE WHEN r.circuit = 'OV' THEN {f: x.id, w: r.weight} END) AS ovs
UNWIND qks AS qk
UNWIND ovs AS ov
WITH j.id AS key_value, qk.f AS query, ov.f AS output, qk.w AS qk_weight, ov.w AS ov_weight, qk.w * ov.w AS product, cut
WHERE abs(product) >= cut
WITH query, key_value, output, qk_weight, ov_weight, product
ORDER BY abs(product) DESC, query, key_value, output
LIMIT $limit
MATCH (fq:Feature {id: query})
WITH query, key_value, output, qk_weight, ov_weight, product, fq
MATCH (fj:Feature {id: key_value})
WITH query, key_value, output, qk_weight, ov_weight, product, fq, fj
MATCH (fo:Feature {id: output})
RETURN query, fq.description AS query_description, key_value, fj.description AS key_value_description,
       output, fo.description AS output_description, qk_weight, ov_weight, product
ORDER BY abs(product) DESC, query, key_value, output

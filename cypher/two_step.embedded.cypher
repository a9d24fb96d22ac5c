// Two steps through one head: query feature q attends to key feature j (QK), and j's value writes output o (OV).
// Ranked by |QK weight × OV weight|. Exact without forming every pair: the strongest pair through each j
// (its largest |QK| × largest |OV|) is a real pair, so the `limit`-th strongest of those is a floor `cut`
// for the answer; then only edges that can reach it (|w| × the other circuit's largest |w| >= cut) are
// paired. (The UNWIND before min() keeps LadybugDB 0.22 from dropping the ORDER BY in front of an aggregation.)
// LadybugDB's text: each circuit in its own MATCH, so the second stage filters each side by the cut before
// pairing; read in one MATCH (Neo4j's text, one index seek for both), LadybugDB materialises every edge of
// the head before the cut applies (0.25 s against 0.21 s at 10⁶ edges).
// @param head int: attention head
// @param layer int = -1: the head's layer (-1: the run's only layer; give it when the run holds several)
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (j)-[qk:QK]->()
WHERE qk.head = $head AND qk.layer = $layer AND qk.circuit = 'QK' AND ($run = '*' OR qk.run = $run)
WITH j, max(abs(qk.weight)) AS top_qk
MATCH (j)-[ov:OV]->()
WHERE ov.head = $head AND ov.layer = $layer AND ov.circuit = 'OV' AND ($run = '*' OR ov.run = $run)
WITH j, top_qk, max(abs(ov.weight)) AS top_ov
WITH max(top_qk) AS mq, max(top_ov) AS mo, collect(top_qk * top_ov) AS bests
UNWIND bests AS best
WITH mq, mo, best
ORDER BY best DESC
LIMIT $limit
UNWIND [best] AS top
WITH mq, mo, min(top) AS least, count(*) AS n
WITH mq, mo, CASE WHEN n < $limit THEN 0.0 ELSE least END AS cut
MATCH (j)-[qk:QK]->(q)
WHERE qk.head = $head AND qk.layer = $layer AND qk.circuit = 'QK' AND ($run = '*' OR qk.run = $run)
  AND abs(qk.weight) * mo >= cut
WITH cut, mq, j, q, qk.weight AS qk_weight
MATCH (j)-[ov:OV]->(o)
WHERE ov.head = $head AND ov.layer = $layer AND ov.circuit = 'OV' AND ($run = '*' OR ov.run = $run)
  AND abs(ov.weight) * mq >= cut AND abs(qk_weight * ov.weight) >= cut
WITH q, j, o, qk_weight, ov.weight AS ov_weight, qk_weight * ov.weight AS product
ORDER BY abs(product) DESC, q.id, j.id, o.id
LIMIT $limit
RETURN q.id AS query, q.description AS query_description, j.id AS key_value, j.description AS key_value_description,
       o.id AS output, o.description AS output_description, qk_weight, ov_weight, product
ORDER BY abs(product) DESC, query, key_value, output

// Internal: create a batch of one graph's links from column lists; the ends are the prompt nodes' element ids.
UNWIND range(0, size($src) - 1) AS i
MATCH (a) WHERE elementId(a) = $src[i]
MATCH (b) WHERE elementId(b) = $dst[i]
CREATE (a)-[:ATTRIBUTION {graph: $graph, weight: $weight[i]}]->(b)

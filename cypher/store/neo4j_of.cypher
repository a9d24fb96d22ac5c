// Internal: tie a batch of feature nodes to their Feature (element ids of both ends).
UNWIND range(0, size($src) - 1) AS i
MATCH (p) WHERE elementId(p) = $src[i]
MATCH (f) WHERE elementId(f) = $dst[i]
CREATE (p)-[:OF]->(f)

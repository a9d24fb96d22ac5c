// Internal: create a batch of QK edges from column lists (the run's old edges were deleted first, so
// re-loads never duplicate). Columns as lists keep the Bolt payload small; the ends are the features'
// element ids, a direct lookup (the Feature.id index costs two seeks per edge).
UNWIND range(0, size($src) - 1) AS i
MATCH (a) WHERE elementId(a) = $src[i]
MATCH (b) WHERE elementId(b) = $dst[i]
CREATE (a)-[:QK {layer: $layer[i], head: $head[i], kv_head: $kv_head[i], circuit: $circuit,
                 weight: $weight[i], rank: $rank[i], z: $z[i], run: $run}]->(b)

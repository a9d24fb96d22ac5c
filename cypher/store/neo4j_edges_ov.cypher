// Internal: create a batch of OV edges from column lists (the run's old edges were deleted first,
// so re-loads never duplicate). Columns as lists keep the Bolt payload small.
UNWIND range(0, size($src) - 1) AS i
MATCH (a:Feature {id: $src[i]})
MATCH (b:Feature {id: $dst[i]})
CREATE (a)-[:OV {layer: $layer[i], head: $head[i], kv_head: $kv_head[i], circuit: $circuit,
                 weight: $weight[i], rank: $rank[i], z: $z[i], run: $run}]->(b)

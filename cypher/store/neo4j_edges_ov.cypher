// Internal: create a batch of OV edges from column lists (the run's old edges were deleted first, so
// re-loads never duplicate). Columns as lists keep the Bolt payload small; the ends are the features'
// element ids, a direct lookup (the Feature.id index costs two seeks per edge). The path ranks are null
// (not stored) where no next-layer edge leaves the output feature.
UNWIND range(0, size($src) - 1) AS i
MATCH (a) WHERE elementId(a) = $src[i]
MATCH (b) WHERE elementId(b) = $dst[i]
CREATE (a)-[:OV {layer: $layer[i], head: $head[i], kv_head: $kv_head[i], circuit: $circuit,
                 weight: $weight[i], rank: $rank[i], z: $z[i], run: $run, path_rank: $path_rank[i],
                 layer_path_rank: $layer_path_rank[i]}]->(b)

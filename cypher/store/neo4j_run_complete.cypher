// Internal: mark run $run as completely loaded, with what it holds.
MATCH (r:FeatgraphRun {id: $run})
SET r.status = 'complete', r.loaded_at = datetime(), r.features = $features, r.QK = $QK, r.OV = $OV

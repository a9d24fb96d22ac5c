// Internal: mark run $run as completely loaded, with what it holds and the fingerprint of what its load wrote.
MATCH (r:FeatgraphRun {id: $run})
SET r.status = 'complete', r.loaded_at = datetime(), r.features = $features, r.QK = $QK, r.OV = $OV,
    r.degrees = $degrees, r.fingerprint = $fingerprint

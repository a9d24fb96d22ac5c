// Internal: mark run $run as being loaded (committed before its edges are touched, so a load that dies
// leaves the run marked unfinished), and the run id $source of the run whose edges these are.
MERGE (r:FeatgraphRun {id: $run})
SET r.status = 'loading', r.source = $source, r.started_at = datetime(), r.loaded_at = null, r.features = null, r.QK = null, r.OV = null,
    r.degrees = null, r.fingerprint = null

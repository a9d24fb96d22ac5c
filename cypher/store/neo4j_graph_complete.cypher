// Internal: mark attribution graph $id as completely loaded.
MATCH (g:AttributionGraph {id: $id})
SET g.status = 'complete', g.loaded_at = datetime()

// Internal: the attribution graph's node with its properties, marked 'loading' (committed before its nodes and
// links are touched, so a load that dies leaves it marked unfinished).
MERGE (g:AttributionGraph {id: $id})
SET g += $props, g.status = 'loading', g.loaded_at = null

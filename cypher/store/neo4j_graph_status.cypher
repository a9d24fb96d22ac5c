// Internal: the load status of attribution graph $graph ('loading' until its last batch, then 'complete').
MATCH (g:AttributionGraph {id: $graph})
RETURN g.status AS status

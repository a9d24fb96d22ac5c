// Internal: the run (its run id) whose edges the store holds under run name $run, if it was recorded.
MATCH (r:FeatgraphRun {id: $run})
RETURN r.source AS source

// Which heads could have carried an attribution graph's links between positions: for each link from a feature node
// at position s to a feature node at a later position t, the heads (layer, head) whose OV edge runs from the earlier
// node's feature (value) to the later node's feature (output), at a layer after the value feature's and no later than
// the output feature's, strongest |OV weight| first.
// @param graph str: the attribution graph's id (see the attribution_graphs query)
// @param run str = *: the run whose OV edges to use (* = every run in the store)
// @param limit int = 50: rows to return
MATCH (a:PromptNode)-[l:ATTRIBUTION]->(b:PromptNode)
WHERE a.graph = $graph AND a.kind = 'feature' AND b.kind = 'feature' AND a.ctx_idx < b.ctx_idx
MATCH (a)-[:OF]->(v:Feature)
MATCH (b)-[:OF]->(o:Feature)
MATCH (v)-[e:OV]->(o)
WHERE ($run = '*' OR e.run = $run) AND e.layer > a.layer AND e.layer <= b.layer
RETURN a.node_id AS source_node, b.node_id AS target_node, a.ctx_idx AS source_position, b.ctx_idx AS target_position,
       l.weight AS link_weight, e.layer AS layer, e.head AS head, e.weight AS ov_weight, e.rank AS ov_rank,
       v.id AS value_feature, v.description AS value_feature_description, o.id AS output_feature,
       o.description AS output_feature_description
ORDER BY abs(e.weight) DESC, source_node, target_node, layer, head
LIMIT $limit

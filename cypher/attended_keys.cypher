// What a feature node of an attribution graph attends to: for the feature node $node (at position t), per head, the
// QK edges from the features of the graph's feature nodes at earlier positions s < t (keys) to its feature (query),
// at a layer after both features' layers, strongest |QK weight| first within each head.
// @param graph str: the attribution graph's id (see the attribution_graphs query)
// @param node str: the query feature node's node_id in the graph (e.g. 12_3771_5)
// @param run str = *: the run whose QK edges to use (* = every run in the store)
// @param limit int = 50: rows to return
MATCH (q:PromptNode)
WHERE q.graph = $graph AND q.node_id = $node AND q.kind = 'feature'
MATCH (q)-[:OF]->(fq:Feature)
MATCH (k:PromptNode)
WHERE k.graph = $graph AND k.kind = 'feature' AND k.ctx_idx < q.ctx_idx
MATCH (k)-[:OF]->(fk:Feature)
MATCH (fk)-[e:QK]->(fq)
WHERE ($run = '*' OR e.run = $run) AND e.layer > q.layer AND e.layer > k.layer
RETURN e.layer AS layer, e.head AS head, k.node_id AS key_node, k.ctx_idx AS key_position, k.activation AS key_activation,
       fk.id AS key_feature, fk.description AS key_feature_description, e.weight AS qk_weight, e.rank AS qk_rank
ORDER BY layer, head, abs(e.weight) DESC, key_node
LIMIT $limit

// Internal: featgraph's indexes (one statement per block), created after a load's rows: features by index and
// SAE (for queries of your own), and those the query library's plans use. A head's edges are one seek on
// (circuit, layer, head); cross_layer_paths seeks the OV edges of the strongest paths by rank;
// the attribution queries find a graph's nodes by (graph, node_id) and a re-load its links by graph;
// recurring_features reads the Degree rows of the whole run (layer -1) in rank order, recurring_hubs those of
// the layers (layer >= 0) up to a rank.
CREATE INDEX feature_index IF NOT EXISTS FOR (f:Feature) ON (f.feature_index);
CREATE INDEX feature_sae IF NOT EXISTS FOR (f:Feature) ON (f.sae);
CREATE INDEX qk_layer_head IF NOT EXISTS FOR ()-[r:QK]-() ON (r.circuit, r.layer, r.head);
CREATE INDEX ov_layer_head IF NOT EXISTS FOR ()-[r:OV]-() ON (r.circuit, r.layer, r.head);
CREATE INDEX ov_path_rank IF NOT EXISTS FOR ()-[r:OV]-() ON (r.path_rank);
CREATE INDEX ov_layer_path_rank IF NOT EXISTS FOR ()-[r:OV]-() ON (r.layer_path_rank);
CREATE INDEX degree_layer_rank IF NOT EXISTS FOR (d:Degree) ON (d.layer, d.rank, d.run);
CREATE INDEX prompt_node_graph IF NOT EXISTS FOR (p:PromptNode) ON (p.graph, p.node_id);
CREATE INDEX attribution_graph IF NOT EXISTS FOR ()-[l:ATTRIBUTION]-() ON (l.graph)

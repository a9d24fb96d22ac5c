// Internal: the indexes the query library's plans use (one statement per block), created after a load's
// edges. A head's edges are one seek on (circuit, layer, head); cross_layer_paths reads the strongest OV
// path_best first; recurring_features reads one run's Degree rows in rank order.
CREATE INDEX qk_layer_head IF NOT EXISTS FOR ()-[r:QK]-() ON (r.circuit, r.layer, r.head);
CREATE INDEX ov_layer_head IF NOT EXISTS FOR ()-[r:OV]-() ON (r.circuit, r.layer, r.head);
CREATE INDEX ov_path_best IF NOT EXISTS FOR ()-[r:OV]-() ON (r.path_best);
CREATE INDEX degree_rank IF NOT EXISTS FOR (d:Degree) ON (d.run, d.layer, d.rank)

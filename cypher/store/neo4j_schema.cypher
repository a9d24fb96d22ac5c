// Internal: constraints and indexes featgraph creates in Neo4j (one statement per block).
CREATE CONSTRAINT feature_id IF NOT EXISTS FOR (f:Feature) REQUIRE f.id IS UNIQUE;
CREATE INDEX feature_index IF NOT EXISTS FOR (f:Feature) ON (f.feature_index);
CREATE INDEX feature_sae IF NOT EXISTS FOR (f:Feature) ON (f.sae);
CREATE INDEX qk_head IF NOT EXISTS FOR ()-[r:QK]-() ON (r.head);
CREATE INDEX ov_head IF NOT EXISTS FOR ()-[r:OV]-() ON (r.head);
CREATE INDEX qk_run IF NOT EXISTS FOR ()-[r:QK]-() ON (r.run);
CREATE INDEX ov_run IF NOT EXISTS FOR ()-[r:OV]-() ON (r.run);
CREATE CONSTRAINT featgraph_run_id IF NOT EXISTS FOR (r:FeatgraphRun) REQUIRE r.id IS UNIQUE;
CREATE CONSTRAINT featgraph_load_lock IF NOT EXISTS FOR (l:FeatgraphLoadLock) REQUIRE l.run IS UNIQUE;

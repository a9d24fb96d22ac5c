// Internal: constraints and node indexes featgraph creates in Neo4j before a load writes (one statement per
// block). The relationship and Degree indexes (neo4j_indexes) come after the edges: populating a new index
// once is faster than updating it per edge. The run and head indexes of earlier featgraphs are dropped: deletes scan
// instead, and a load no longer updates them per edge; the per-head indexes gave way to (circuit, layer, head).
CREATE CONSTRAINT feature_id IF NOT EXISTS FOR (f:Feature) REQUIRE f.id IS UNIQUE;
CREATE INDEX feature_index IF NOT EXISTS FOR (f:Feature) ON (f.feature_index);
CREATE INDEX feature_sae IF NOT EXISTS FOR (f:Feature) ON (f.sae);
CREATE CONSTRAINT featgraph_run_id IF NOT EXISTS FOR (r:FeatgraphRun) REQUIRE r.id IS UNIQUE;
CREATE CONSTRAINT featgraph_load_lock IF NOT EXISTS FOR (l:FeatgraphLoadLock) REQUIRE l.run IS UNIQUE;
DROP INDEX qk_run IF EXISTS;
DROP INDEX ov_run IF EXISTS;
DROP INDEX qk_head IF EXISTS;
DROP INDEX ov_head IF EXISTS

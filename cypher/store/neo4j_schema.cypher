// Internal: the constraints featgraph creates in Neo4j before a load writes (one statement per block); its
// indexes (neo4j_indexes) come after the rows, as populating a new index once is faster than updating it per
// row. The run and head indexes of earlier featgraphs are dropped: a delete scans instead, a load no longer
// updates them per edge, and the head indexes gave way to (circuit, layer, head).
CREATE CONSTRAINT feature_id IF NOT EXISTS FOR (f:Feature) REQUIRE f.id IS UNIQUE;
CREATE CONSTRAINT featgraph_run_id IF NOT EXISTS FOR (r:FeatgraphRun) REQUIRE r.id IS UNIQUE;
CREATE CONSTRAINT prompt_node_key IF NOT EXISTS FOR (p:PromptNode) REQUIRE p.key IS UNIQUE;
CREATE CONSTRAINT attribution_graph_id IF NOT EXISTS FOR (g:AttributionGraph) REQUIRE g.id IS UNIQUE;
CREATE CONSTRAINT featgraph_load_lock IF NOT EXISTS FOR (l:FeatgraphLoadLock) REQUIRE l.run IS UNIQUE;
DROP INDEX qk_run IF EXISTS;
DROP INDEX ov_run IF EXISTS;
DROP INDEX qk_head IF EXISTS;
DROP INDEX ov_head IF EXISTS

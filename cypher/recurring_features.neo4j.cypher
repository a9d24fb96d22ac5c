// Features whose edges recur across heads: how many heads (of every layer) touch each feature, and its
// edge ends (in + out; a like-to-like edge counts twice), with their labels. Read from the Degree rows a
// load writes; over several runs (run *) a feature's heads and ends are summed over the runs.
// Neo4j's text: for one run it reads the whole-run rows in their stored rank order from the (layer, rank, run)
// index and stops at `limit` (the rank order puts more heads first, so the min_heads filter can follow the
// limit), where summing per feature (needed only over several runs) would read every row of the run
// first; the branch for run * does only that.
// @param min_heads int = 2: at least this many heads
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
CALL () {
  MATCH (d:Degree)
  WHERE d.layer = -1 AND d.rank > 0 AND d.run = $run
  WITH d
  ORDER BY d.layer, d.rank
  LIMIT $limit
  WITH d
  WHERE d.heads >= $min_heads
  RETURN d.feature AS feature, d.heads AS heads, d.degree AS edge_ends
  UNION ALL
  WITH $run AS every WHERE every = '*'
  MATCH (d:Degree)
  WHERE d.layer = -1
  WITH d.feature AS feature, sum(d.heads) AS heads, sum(d.degree) AS edge_ends
  WHERE heads >= $min_heads
  RETURN feature, heads, edge_ends
  ORDER BY heads DESC, edge_ends DESC, feature
  LIMIT $limit
}
MATCH (f:Feature {id: feature})
RETURN feature, f.description AS feature_description, heads, edge_ends
ORDER BY heads DESC, edge_ends DESC, feature

// Features whose edges recur across heads: how many heads (of every layer) touch each feature, and its
// edge ends (in + out; a like-to-like edge counts twice), with their labels. Read from the Degree rows a
// load writes; over several runs (run *) a feature's heads and ends are summed over the runs.
// @param min_heads int = 2: at least this many heads
// @param limit int = 20: rows to return
// @param run str = *: only edges of this run (* = all; `query RUN --neo4j` passes RUN's name, the embedded store holds one run)
MATCH (d:Degree)
WHERE d.layer = -1 AND ($run = '*' OR d.run = $run)
WITH d.feature AS feature, sum(d.heads) AS heads, sum(d.degree) AS edge_ends
WHERE heads >= $min_heads
WITH feature, heads, edge_ends
ORDER BY heads DESC, edge_ends DESC, feature
LIMIT $limit
MATCH (f:Feature {id: feature})
RETURN feature, f.description AS feature_description, heads, edge_ends
ORDER BY heads DESC, edge_ends DESC, feature

// Internal: create a batch of the run's Degree rows from column lists (the run's old ones were deleted first).
UNWIND range(0, size($key) - 1) AS i
CREATE (:Degree {key: $key[i], run: $run, feature: $feature[i], layer: $layer[i], heads: $heads[i],
                 degree: $degree[i], rank: $rank[i]})

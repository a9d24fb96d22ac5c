// Internal: the runs (run $run, or every run for '*') whose load has not finished.
MATCH (r:FeatgraphRun)
WHERE ($run = '*' OR r.id = $run) AND r.status <> 'complete'
RETURN r.id AS id
ORDER BY id

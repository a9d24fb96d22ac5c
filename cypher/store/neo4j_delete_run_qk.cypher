// Internal: delete one run's QK edges, committing every 10,000 rows.
MATCH ()-[r:QK]->()
WHERE r.run = $run
CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS
